// What the doctor writes: doctor.json for scripts, flagged.csv and clean.csv for training on
// the cleaned data, doctor.html for people (self-contained: thumbnails inline, no script).
#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <opencv2/imgproc.hpp>
#include <set>

#include "doctor_internal.h"
#include "finch/core/atomic_file.h"
#include "finch/core/csv.h"
#include "finch/core/error.h"
#include "finch/core/version.h"
#include "finch/explain/charts.h"
#include "finch/io/image.h"

namespace finch::doctor {

namespace fs = std::filesystem;
using explain::html_escape;

namespace {

bool is_dropped(const std::string& reason, const DoctorOptions& options) {
  return std::find(options.drop.begin(), options.drop.end(), reason) != options.drop.end();
}

std::map<std::string, size_t> count_reasons(const DoctorReport& r) {
  std::map<std::string, size_t> counts;
  for (const auto& f : r.flags) ++counts[f.reason];
  return counts;
}

std::set<size_t> dropped_items(const DoctorReport& r, const DoctorOptions& options) {
  std::set<size_t> out;
  for (const auto& f : r.flags)
    if (is_dropped(f.reason, options)) out.insert(f.item);
  return out;
}

nlohmann::json item_json(const DoctorReport& r, size_t i) {
  return {{"path", r.items[i].path},
          {"split", r.items[i].split},
          {"label", r.classes[r.items[i].label]}};
}

std::string thumbnail_tag(const DoctorReport& r, size_t item, int size = 96) {
  cv::Mat rgb;
  try {
    const Item& it = r.items[item];
    if (it.file)
      rgb = io::read_image_rgb(*it.file);
    else if (r.dataset_of_split.count(it.split))
      rgb = r.datasets[r.dataset_of_split.at(it.split)]->load_rgb(it.index);
  } catch (const Error&) {
  }
  if (rgb.empty())
    return fmt::format("<div class=\"nothumb\" style=\"width:{0}px;height:{0}px\">no image</div>",
                       size);
  const double scale = double(size) / std::max(rgb.cols, rgb.rows);
  cv::Mat small;
  cv::resize(rgb, small, cv::Size(), scale, scale, scale < 1 ? cv::INTER_AREA : cv::INTER_NEAREST);
  return fmt::format("<img alt=\"{}\" src=\"data:image/png;base64,{}\">",
                     html_escape(r.items[item].path), explain::base64(explain::png_bytes(small)));
}

constexpr const char* kStyle = R"(
body{font-family:sans-serif;max-width:1200px;margin:1em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #ddd;padding:2px 8px;text-align:right}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
figure{display:inline-block;margin:6px;text-align:center;font-size:.75em;vertical-align:top;max-width:220px;word-break:break-all}
figure img{image-rendering:pixelated;border:1px solid #ccc}
.pair{display:inline-block;border:1px solid #ddd;margin:4px;padding:4px}
.nothumb{display:inline-block;background:#eee;color:#888;font-size:.8em}
.dropped{color:#a11}.kept{color:#176}
)";

}  // namespace

const std::vector<std::pair<std::string, std::string>>& reason_titles() {
  static const std::vector<std::pair<std::string, std::string>> titles = {
      {"zero_byte", "Empty files"},
      {"truncated", "Truncated files"},
      {"undecodable", "Files that do not decode"},
      {"too_large", "Images above the pixel limit"},
      {"leak", "Leaks: the same image in two splits"},
      {"conflicting_labels", "The same image with two labels"},
      {"label_issue", "Suspected wrong labels (confident learning)"},
      {"exact_duplicate", "Exact duplicates (same pixels)"},
      {"near_duplicate", "Near-duplicates"},
      {"near_constant", "Near-constant images"},
      {"low_information", "Low-information images"},
      {"blurry", "Blurry images"},
      {"dark", "Too dark"},
      {"bright", "Too bright"},
      {"outlier", "Outliers in embedding space"},
      {"too_small", "Too small"},
      {"extreme_aspect", "Extreme aspect ratio"},
      {"wrong_extension", "Extension does not match the file"},
      {"cmyk", "CMYK JPEGs"},
      {"grayscale", "Grey images in a colour dataset"},
      {"alpha", "Images with transparency"},
      {"high_bit_depth", "16-bit images"},
      {"exif_orientation", "Rotated by an Exif orientation"},
  };
  return titles;
}

nlohmann::json to_json(const DoctorReport& r, const DoctorOptions& options) {
  nlohmann::json flags = nlohmann::json::array();
  for (const auto& f : r.flags) {
    nlohmann::json j = item_json(r, f.item);
    j["reason"] = f.reason;
    j["detail"] = f.detail;
    j["score"] = f.score;
    j["action"] = is_dropped(f.reason, options) ? "dropped" : "kept";
    if (f.other != SIZE_MAX) j["other"] = r.items[f.other].path;
    flags.push_back(j);
  }
  nlohmann::json duplicates = nlohmann::json::array();
  for (const auto& d : r.duplicates)
    duplicates.push_back({{"kept", item_json(r, d.a)},
                          {"copy", item_json(r, d.b)},
                          {"kind", d.kind},
                          {"distance", d.distance},
                          {"scope", d.across_splits ? "across_splits" : "within_split"},
                          {"conflicting_labels", d.conflicting_labels}});
  nlohmann::json out{{"finch_version", kVersion},
                     {"dataset", r.dataset},
                     {"thresholds", r.thresholds},
                     {"counts", count_reasons(r)},
                     {"images_dropped", dropped_items(r, options).size()},
                     {"flags", flags},
                     {"duplicates", duplicates},
                     {"duplicate_pairs_not_listed", r.phash_pairs_dropped},
                     {"bias", r.bias},
                     {"timings", r.timings}};
  if (!r.groups.is_null()) out["groups"] = r.groups;
  if (r.label_issues) {
    const auto& cl = *r.label_issues;
    nlohmann::json suspects = nlohmann::json::array();
    for (const auto& issue : cl.issues) {
      nlohmann::json j = item_json(r, r.label_items[issue.index]);
      j["suggested"] = r.classes[issue.suggested];
      j["self_confidence"] = issue.self_confidence;
      j["margin"] = issue.margin;
      suspects.push_back(j);
    }
    out["label_issues"] = {{"method", to_string(options.label_method)},
                           {"probabilities", r.probability_source},
                           {"images_scored", r.label_items.size()},
                           {"thresholds", cl.thresholds},
                           {"confident_joint", cl.confident_joint},
                           {"joint", cl.joint},
                           {"noise_matrix", cl.noise},
                           {"suspects", suspects}};
  }
  return out;
}

std::string format_summary(const DoctorReport& r, const DoctorOptions& options) {
  std::string out = fmt::format("{} images in {} splits, {} classes", r.items.size(),
                                r.dataset["splits"].size(), r.classes.size());
  for (const auto& [split, n] : r.dataset["splits"].items())
    out += fmt::format("{}{} {}", split == r.dataset["splits"].begin().key() ? ": " : ", ",
                       n.get<size_t>(), split);
  out += "\n";
  const auto counts = count_reasons(r);
  if (counts.empty()) out += "nothing flagged\n";
  for (const auto& [reason, title] : reason_titles()) {
    auto it = counts.find(reason);
    if (it == counts.end()) continue;
    out += fmt::format("  {:<20} {:>7}  {}{}\n", reason, it->second, title,
                       is_dropped(reason, options) ? " (left out of clean.csv)" : "");
  }
  for (const auto& [split, b] : r.bias["splits"].items())
    out += fmt::format("  split '{}': imbalance ratio {:.1f} (largest class {}, smallest {})\n",
                       split, b["imbalance_ratio"].get<double>(), b["largest_class"].get<int64_t>(),
                       b["smallest_class"].get<int64_t>());
  if (r.label_issues)
    out += fmt::format("  label issues from {}: {} of {} images\n", r.probability_source,
                       r.label_issues->issues.size(), r.label_items.size());
  out += fmt::format("  {} images dropped from clean.csv; {:.1f} s\n",
                     dropped_items(r, options).size(), r.timings.value("total_s", 0.0));
  return out;
}

void write_doctor_outputs(const DoctorReport& r, const DoctorOptions& options) {
  fs::create_directories(options.out);
  write_file_atomic(options.out / "doctor.json", to_json(r, options).dump(1) + "\n");

  std::string flagged = "path,split,label,reason,detail,score,action\n";
  for (const auto& f : r.flags)
    flagged +=
        fmt::format("{},{},{},{},{},{},{}\n", csv_field(r.items[f.item].path),
                    csv_field(r.items[f.item].split), csv_field(r.classes[r.items[f.item].label]),
                    f.reason, csv_field(f.other != SIZE_MAX ? r.items[f.other].path : f.detail),
                    f.score, is_dropped(f.reason, options) ? "dropped" : "kept");
  write_file_atomic(options.out / "flagged.csv", flagged);

  // clean.csv: the csv format's manifest of every kept image (absolute paths, so it works
  // from the report folder); formats without files have no manifest: use data.exclude.
  const std::set<size_t> dropped = dropped_items(r, options);
  bool all_files = true;
  for (const auto& item : r.items) all_files = all_files && item.file.has_value();
  if (all_files) {
    std::string clean = "path,label,split\n";
    for (size_t i = 0; i < r.items.size(); ++i)
      if (!dropped.count(i))
        clean += fmt::format("{},{},{}\n", csv_field(fs::absolute(*r.items[i].file).string()),
                             csv_field(r.classes[r.items[i].label]), csv_field(r.items[i].split));
    write_file_atomic(options.out / "clean.csv", clean);
  }

  // doctor.html
  const auto counts = count_reasons(r);
  std::string body = fmt::format(
      "<h1>Data doctor: {}</h1><p>{} at <code>{}</code>: {} images, {} classes. Generated by "
      "finch {}. Nothing in the dataset folder was changed; <code>clean.csv</code> lists the "
      "{} images kept{}, <code>flagged.csv</code> every finding.</p>",
      html_escape(r.dataset["format"].get<std::string>()),
      html_escape(r.dataset["format"].get<std::string>()),
      html_escape(r.dataset["root"].get<std::string>()), r.items.size(), r.classes.size(), kVersion,
      r.items.size() - dropped.size(),
      all_files ? ""
                : " (not written: this format has no file per image; train with "
                  "data.exclude: flagged.csv)");
  body +=
      "<h2 id=\"summary\">Findings</h2><table><tr><th>finding</th><th>images</th>"
      "<th>in clean.csv</th></tr>";
  for (const auto& [reason, title] : reason_titles()) {
    auto it = counts.find(reason);
    if (it == counts.end()) continue;
    body += fmt::format(
        "<tr><td><a href=\"#{}\">{}</a></td><td>{}</td><td class=\"{}\">{}</td></tr>", reason,
        html_escape(title), it->second, is_dropped(reason, options) ? "dropped" : "kept",
        is_dropped(reason, options) ? "left out" : "kept");
  }
  body += "</table>";
  if (counts.empty()) body += "<p>Nothing was flagged.</p>";

  for (const auto& [reason, title] : reason_titles()) {
    auto it = counts.find(reason);
    if (it == counts.end()) continue;
    body += fmt::format("<h2 id=\"{}\">{} ({})</h2>", reason, html_escape(title), it->second);
    std::vector<const Flag*> shown;
    for (const auto& f : r.flags)
      if (f.reason == reason) shown.push_back(&f);
    // Worst first: the lowest score (sharpness, brightness, self-confidence, distance) or, for
    // reasons where more is worse, the highest.
    const bool higher_is_worse = reason == "bright" || reason == "outlier" ||
                                 reason == "too_large" || reason == "extreme_aspect";
    std::stable_sort(shown.begin(), shown.end(), [&](const Flag* a, const Flag* b) {
      return higher_is_worse ? a->score > b->score : a->score < b->score;
    });
    // Files that do not decode have nothing to show: a table.
    const bool no_pixels = reason == "zero_byte" || reason == "truncated" ||
                           reason == "undecodable" || reason == "too_large";
    if (no_pixels) body += "<table><tr><th>file</th><th>split</th><th>label</th><th>why</th></tr>";
    int listed = 0;
    for (const Flag* f : shown) {
      if (options.thumbnails > 0 && listed++ == options.thumbnails) break;
      const Item& item = r.items[f->item];
      if (no_pixels) {
        body += fmt::format("<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                            html_escape(item.path), html_escape(item.split),
                            html_escape(r.classes[item.label]), html_escape(f->detail));
      } else if (f->other != SIZE_MAX) {
        const Item& other = r.items[f->other];
        body += fmt::format(
            "<div class=\"pair\"><figure>{}<figcaption>{}<br>{} &middot; {}</figcaption></figure>"
            "<figure>{}<figcaption>{}<br>{} &middot; {}</figcaption></figure><br><small>{}"
            "</small></div>",
            thumbnail_tag(r, f->item), html_escape(item.path), html_escape(item.split),
            html_escape(r.classes[item.label]), thumbnail_tag(r, f->other), html_escape(other.path),
            html_escape(other.split), html_escape(r.classes[other.label]), html_escape(f->detail));
      } else {
        body +=
            fmt::format("<figure>{}<figcaption>{}<br>{} &middot; {}<br>{}</figcaption></figure>",
                        thumbnail_tag(r, f->item), html_escape(item.path), html_escape(item.split),
                        html_escape(r.classes[item.label]), html_escape(f->detail));
      }
    }
    if (no_pixels) body += "</table>";
    if (options.thumbnails > 0 && static_cast<int>(shown.size()) > options.thumbnails)
      body += fmt::format("<p>... and {} more in flagged.csv.</p>",
                          shown.size() - static_cast<size_t>(options.thumbnails));
  }

  if (r.label_issues) {
    const auto& cl = *r.label_issues;
    body += fmt::format(
        "<h2 id=\"noise\">Estimated label noise</h2><p>Probabilities: {}. Row: given label, "
        "column: estimated true class; each row is the share of the images given that label "
        "(confident learning's calibrated joint, rows normalised). Off-diagonal shares above "
        "1% are marked.</p><div style=\"overflow:auto\"><table><tr><th>given \\ true</th>",
        html_escape(r.probability_source));
    for (const auto& c : r.classes) body += "<th>" + html_escape(c) + "</th>";
    body += "</tr>";
    for (size_t i = 0; i < r.classes.size(); ++i) {
      body += "<tr><td>" + html_escape(r.classes[i]) + "</td>";
      for (size_t j = 0; j < r.classes.size(); ++j)
        body += fmt::format("<td{}>{:.3f}</td>",
                            i != j && cl.noise[i][j] > 0.01 ? " style=\"background:#fdd\"" : "",
                            cl.noise[i][j]);
      body += "</tr>";
    }
    body += "</table></div>";
  }

  body += "<h2 id=\"bias\">Class balance</h2>";
  for (const auto& [split, b] : r.bias["splits"].items()) {
    body += fmt::format(
        "<h3>split '{}'</h3><p>imbalance ratio {:.1f} (largest class {}, smallest {}); "
        "effective number of samples with &beta; = {}.</p><div style=\"max-height:360px;"
        "overflow:auto;display:inline-block\"><table><tr><th>class</th><th>images</th>"
        "<th>effective</th><th></th></tr>",
        html_escape(split), b["imbalance_ratio"].get<double>(), b["largest_class"].get<int64_t>(),
        b["smallest_class"].get<int64_t>(), b["effective_number_beta"].get<double>());
    const double most = std::max<double>(1, b["largest_class"].get<double>());
    for (const auto& row : b["per_class"])
      body += fmt::format(
          "<tr><td>{}</td><td>{}</td><td>{:.1f}</td><td><svg width=\"160\" height=\"10\">"
          "<rect width=\"{:.1f}\" height=\"10\" fill=\"#4a78b5\"/></svg></td></tr>",
          html_escape(row["class"].get<std::string>()), row["images"].get<int64_t>(),
          row["effective"].get<double>(), 160.0 * row["images"].get<double>() / most);
    body += "</table></div>";
  }
  if (r.bias.contains("accuracy_by_class"))
    body += fmt::format(
        "<p>Per-class accuracy ({}) correlates with the log of the class's training images "
        "at r = {:.3f}: see doctor.json's <code>bias.accuracy_by_class</code>.</p>",
        html_escape(r.probability_source),
        r.bias["accuracy_by_class"]["correlation_log_train_size_accuracy"].get<double>());
  if (!r.groups.is_null()) {
    body += "<h2 id=\"groups\">Groups</h2>";
    for (const auto& [column, g] : r.groups.items()) {
      body += fmt::format(
          "<h3>{}</h3><table><tr><th>group</th><th>images</th><th>accuracy</th>"
          "<th>mean confidence</th><th>ECE</th></tr>",
          html_escape(column));
      for (const auto& row : g["groups"])
        body += fmt::format(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            html_escape(row["group"].get<std::string>()), row["images"].get<int64_t>(),
            row.contains("accuracy") ? fmt::format("{:.2f}%", 100 * row["accuracy"].get<double>())
                                     : "-",
            row.contains("mean_confidence")
                ? fmt::format("{:.3f}", row["mean_confidence"].get<double>())
                : "-",
            row.contains("ece") ? fmt::format("{:.4f}", row["ece"].get<double>()) : "-");
      body += "</table>";
      if (g.contains("largest_accuracy_gap"))
        body += fmt::format("<p>Largest accuracy gap: {:.2f} points ({} vs {}).</p>",
                            100 * g["largest_accuracy_gap"]["gap"].get<double>(),
                            html_escape(g["largest_accuracy_gap"]["best"].get<std::string>()),
                            html_escape(g["largest_accuracy_gap"]["worst"].get<std::string>()));
    }
  }
  body += "<h2 id=\"settings\">Thresholds</h2><pre>" + html_escape(r.thresholds.dump(1)) + "</pre>";
  const std::string html =
      "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>finch data "
      "doctor</title><style>" +
      std::string(kStyle) + "</style></head><body>" + body + "</body></html>\n";
  write_file_atomic(options.out / "doctor.html", html);
}

}  // namespace finch::doctor
