#pragma once
// Classes of a dataset named on the command line (the unknowns of open-set evaluation, the
// unseen classes of zero-shot learning).
#include <cstdint>
#include <string>
#include <vector>

namespace finch::data {

/// Resolves `spec` against the dataset's class names (index = class index). Comma-separated
/// entries, each a class name, a class index, or a half-open index range "begin:end" (as
/// data.class_range); "@FILE" reads the entries from a file, one per line (e.g. the
/// testclasses.txt of Xian et al.'s splits). Names are matched before indices. Returns the
/// class indices sorted and unique. Throws finch::Error naming `what`, the first entry that
/// is not a class and a few of the class names, or when the list is empty.
std::vector<int64_t> parse_class_list(const std::string& spec,
                                      const std::vector<std::string>& names,
                                      const std::string& what);

}  // namespace finch::data
