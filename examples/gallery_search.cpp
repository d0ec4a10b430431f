// Build a gallery from a folder of class subfolders and search it: the 3 nearest gallery
// images of each query, by the model's embedding.
//   gallery_search MODEL.safetensors CLASS_FOLDERS QUERY_IMAGE...
#include <finch/core/error.h>
#include <finch/eval/session.h>
#include <finch/gallery/gallery.h>

#include <iostream>

int main(int argc, char** argv) {
  if (argc < 4) {
    std::cerr << "usage: gallery_search MODEL.safetensors CLASS_FOLDERS QUERY_IMAGE...\n";
    return 2;
  }
  try {
    finch::eval::InferenceSession session(argv[1]);
    std::vector<std::filesystem::path> paths;
    std::vector<int64_t> labels;
    std::vector<std::string> classes;
    finch::gallery::list_class_folders(argv[2], paths, labels, classes);
    finch::gallery::EmbedOptions options;
    finch::gallery::Gallery gallery(session);
    gallery.add(finch::gallery::embed_files(session, paths, labels, classes, options));

    const std::vector<std::filesystem::path> queries(argv + 3, argv + argc);
    const auto embedded = finch::gallery::embed_files(session, queries, {}, {}, options);
    const auto hits = finch::gallery::exact_search(embedded.embeddings, gallery.embeddings(), 3);
    for (size_t q = 0; q < hits.size(); ++q) {
      std::cout << embedded.paths[q];
      for (const auto& hit : hits[q])
        std::cout << "  " << gallery.classes()[gallery.labels()[hit.item].item<int64_t>()] << " "
                  << hit.score;
      std::cout << "\n";
    }
  } catch (const finch::Error& e) {
    std::cerr << "gallery_search: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
