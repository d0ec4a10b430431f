// The `finch._finch` extension: finch's inference session, datasets and data loader for
// Python. It links the same LibTorch as Debian's python3-torch, so tensors cross as
// torch.Tensor objects without copies (torch's own pybind11 caster). The Pythonic surface
// (image conversion, iteration, records) lives in python/finch/__init__.py.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>
#include <pybind11/stl/filesystem.h>
#include <torch/csrc/utils/pybind.h>  // pybind11 + the at::Tensor <-> torch.Tensor caster

#include <memory>
#include <opencv2/core.hpp>
#include <optional>
#include <string>
#include <vector>

#include "finch/core/config.h"
#include "finch/core/error.h"
#include "finch/core/version.h"
#include "finch/data/datasets/cub.h"
#include "finch/data/formats.h"
#include "finch/data/from_config.h"
#include "finch/data/loader.h"
#include "finch/eval/session.h"
#include "finch/io/image.h"

namespace py = pybind11;

namespace {

using Image = py::array_t<uint8_t, py::array::c_style | py::array::forcecast>;

// A view of an HxWx3 uint8 array (no copy: the session's preprocessing copies it).
cv::Mat view_rgb(const Image& image) {
  if (image.ndim() != 3 || image.shape(2) != 3 || image.shape(0) < 1 || image.shape(1) < 1) {
    std::string shape;
    for (py::ssize_t d = 0; d < image.ndim(); ++d)
      shape += (d ? ", " : "") + std::to_string(image.shape(d));
    throw finch::Error("an image must be a non-empty H x W x 3 uint8 RGB array, got shape (" +
                       shape + ")");
  }
  return cv::Mat(static_cast<int>(image.shape(0)), static_cast<int>(image.shape(1)), CV_8UC3,
                 const_cast<uint8_t*>(image.data()));
}

std::vector<cv::Mat> view_rgb(const std::vector<Image>& images) {
  std::vector<cv::Mat> mats;
  mats.reserve(images.size());
  for (const auto& image : images) mats.push_back(view_rgb(image));
  return mats;
}

// A copy of a decoded image as a numpy array that owns its memory.
py::array_t<uint8_t> to_numpy(const cv::Mat& rgb) {
  cv::Mat dense = rgb.isContinuous() ? rgb : rgb.clone();
  py::array_t<uint8_t> out({dense.rows, dense.cols, 3});
  std::memcpy(out.mutable_data(), dense.data, static_cast<size_t>(dense.total()) * 3);
  return out;
}

py::tuple to_tuple(const finch::eval::InferenceOutput& out) {
  return py::make_tuple(out.logits, out.probabilities, out.embedding);
}

// --- models -------------------------------------------------------------------------------

class Model {
 public:
  Model(const std::filesystem::path& file, const std::string& dtype) {
    const std::string name = dtype == "bfloat16" ? "bf16" : dtype == "float32" ? "fp32" : dtype;
    if (name != "fp32" && name != "bf16" && name != "int8" && name != "auto")
      throw finch::Error("dtype must be 'fp32', 'bf16', 'int8' or 'auto', got '" + dtype + "'");
    py::gil_scoped_release unlocked;
    session_ = std::make_unique<finch::eval::InferenceSession>(
        file, finch::eval::session_options_for_dtype(name));
  }

  torch::Tensor preprocess(const std::vector<Image>& images) const {
    auto mats = view_rgb(images);
    py::gil_scoped_release unlocked;
    return session_->preprocess(mats);
  }

  py::tuple forward(const torch::Tensor& batch, bool normalize) {
    if (batch.dim() != 4 || batch.size(1) != 3)
      throw finch::Error("forward takes a preprocessed [B, 3, H, W] batch");
    py::gil_scoped_release unlocked;
    auto out = session_->forward(batch.to(torch::kFloat).contiguous(), normalize);
    py::gil_scoped_acquire locked;
    return to_tuple(out);
  }

  py::tuple run(const std::vector<Image>& images, bool normalize) {
    auto mats = view_rgb(images);
    py::gil_scoped_release unlocked;
    auto out = session_->run(mats, normalize);
    py::gil_scoped_acquire locked;
    return to_tuple(out);
  }

  const std::vector<std::string>& classes() const { return session_->classes(); }
  std::string content_hash() const { return session_->content_hash(); }
  std::string dtype() const { return session_->dtype_name(); }

  // The model file's metadata as JSON text (json.loads on the Python side).
  std::string info_json() const {
    const auto& info = session_->info();
    nlohmann::json j = {{"arch", info.arch},
                        {"classes", info.classes},
                        {"input_size", info.preprocess.input_size},
                        {"mean", info.preprocess.mean},
                        {"std", info.preprocess.std},
                        {"eval_transforms", info.preprocess.eval_transforms},
                        {"training", info.training},
                        {"open_set", info.open_set},
                        {"finch_version", info.finch_version},
                        {"sha256", session_->content_hash()}};
    return j.dump();
  }

 private:
  std::unique_ptr<finch::eval::InferenceSession> session_;
};

// --- datasets -------------------------------------------------------------------------------

class Dataset {
 public:
  explicit Dataset(finch::data::DatasetPtr dataset) : dataset_(std::move(dataset)) {
    cub_style_ = dynamic_cast<const finch::data::CubStyleDataset*>(dataset_.get());
    cub_ = dynamic_cast<const finch::data::CubDataset*>(dataset_.get());
  }

  size_t size() const { return dataset_->size(); }
  const std::vector<std::string>& classes() const { return dataset_->class_names(); }

  // One record as a dict: what the annotation files say, nothing decoded.
  py::dict record(py::ssize_t index) const {
    const size_t i = checked(index);
    py::dict r;
    r["index"] = i;
    r["label"] = dataset_->label(i);
    r["class"] = dataset_->class_names().at(static_cast<size_t>(dataset_->label(i)));
    r["source"] = dataset_->describe(i);
    auto file = dataset_->file(i);
    r["path"] = file ? py::cast(file->string()) : py::none();
    auto box = dataset_->box(i);
    r["box"] =
        box ? py::cast(std::vector<float>{box->x, box->y, box->width, box->height}) : py::none();
    r["parts"] = py::none();
    if (cub_style_ && cub_style_->has_parts()) {
      py::list parts;
      for (const auto& p : cub_style_->parts(i))
        parts.append(py::dict(py::arg("part") = cub_style_->part_names().at(p.part_id),
                              py::arg("x") = p.x, py::arg("y") = p.y,
                              py::arg("visible") = p.visible));
      r["parts"] = parts;
    }
    r["attributes"] = py::none();
    if (cub_ && cub_->has_attributes()) r["attributes"] = cub_->attributes(i);
    return r;
  }

  py::array_t<uint8_t> image(py::ssize_t index) const {
    const size_t i = checked(index);
    cv::Mat rgb;
    {
      py::gil_scoped_release unlocked;
      rgb = dataset_->load_rgb(i);
    }
    return to_numpy(rgb);
  }

  std::vector<std::string> attribute_names() const {
    return cub_ ? cub_->attribute_names() : std::vector<std::string>{};
  }
  std::vector<std::string> part_names() const {
    return cub_style_ ? cub_style_->part_names() : std::vector<std::string>{};
  }

 private:
  size_t checked(py::ssize_t index) const {
    const auto n = static_cast<py::ssize_t>(dataset_->size());
    if (index < 0) index += n;
    if (index < 0 || index >= n) throw py::index_error("dataset index out of range");
    return static_cast<size_t>(index);
  }

  finch::data::DatasetPtr dataset_;
  const finch::data::CubStyleDataset* cub_style_ = nullptr;
  const finch::data::CubDataset* cub_ = nullptr;
};

Dataset open_dataset(const std::string& format, const std::filesystem::path& root,
                     const std::string& split, const std::string& options_yaml) {
  YAML::Node options = options_yaml.empty() ? YAML::Node() : YAML::Load(options_yaml);
  py::gil_scoped_release unlocked;
  return Dataset(finch::data::open_dataset(format, root, split, options));
}

std::vector<std::string> dataset_splits(const std::string& format,
                                        const std::filesystem::path& root) {
  return finch::data::dataset_format(format).splits(root, YAML::Node());
}

// --- the data loader --------------------------------------------------------------------------

// finch's C++ pipeline for a split of a recipe: the trainer's own split logic (the carved or
// shipped validation split, data.exclude, data.classes), transforms and sampler.
class Loader {
 public:
  Loader(const std::string& recipe_yaml, const std::string& source, const std::string& split,
         const std::vector<std::string>& overrides) {
    finch::Config config = finch::Config::from_yaml(recipe_yaml, source);
    for (const auto& o : overrides) config.apply_override(o);
    py::gil_scoped_release unlocked;
    const bool training = split == "train";
    finch::data::DatasetPtr dataset;
    if (split == "train" || split == "val") {
      auto data = finch::data::open_train_val(config);
      dataset = training ? data.train : data.val;
      if (!dataset)
        throw finch::Error("the recipe has no validation split (data.val_fraction is 0 and " +
                           config.get<std::string>("data.format") + " ships none)");
    } else {
      dataset = finch::data::open_split(config, split);
    }
    auto options = training ? finch::data::train_loader_options(config, dataset)
                            : finch::data::loader_options(config, false);
    auto pipeline =
        training ? finch::data::train_pipeline(config) : finch::data::eval_pipeline(config);
    loader_ = std::make_unique<finch::data::Loader>(dataset, std::move(pipeline), options);
    batch_size_ = options.batch_size;
  }

  void start_epoch(int64_t epoch) { loader_->start_epoch(epoch); }

  std::optional<py::tuple> next() {
    std::optional<finch::data::Batch> batch;
    {
      py::gil_scoped_release unlocked;
      batch = loader_->next();
    }
    if (!batch) return std::nullopt;
    return py::make_tuple(batch->images, batch->labels);
  }

  int64_t num_batches() const { return loader_->num_batches(); }
  int64_t num_samples() const { return loader_->num_samples(); }
  int64_t batch_size() const { return batch_size_; }
  const std::vector<std::string>& classes() const { return loader_->dataset().class_names(); }
  std::vector<std::pair<size_t, std::string>> skipped() const {
    std::vector<std::pair<size_t, std::string>> out;
    for (const auto& s : loader_->skipped()) out.emplace_back(s.index, s.reason);
    return out;
  }

 private:
  std::unique_ptr<finch::data::Loader> loader_;
  int64_t batch_size_ = 0;
};

}  // namespace

PYBIND11_MODULE(_finch, m) {
  m.doc() = "finch's C++ core (use the `finch` package, not this module directly)";
  m.attr("__version__") = finch::kVersion;
  // finch::Error (bad files, bad annotation lines, bad options) -> ValueError with its message.
  py::register_exception<finch::Error>(m, "FinchError", PyExc_ValueError);

  py::class_<Model>(m, "Model")
      .def(py::init<const std::filesystem::path&, const std::string&>(), py::arg("path"),
           py::arg("dtype") = "fp32")
      .def("preprocess", &Model::preprocess, py::arg("images"))
      .def("forward", &Model::forward, py::arg("batch"), py::arg("normalize") = false)
      .def("run", &Model::run, py::arg("images"), py::arg("normalize") = false)
      .def_property_readonly("classes", &Model::classes)
      .def_property_readonly("content_hash", &Model::content_hash)
      .def_property_readonly("dtype", &Model::dtype)
      .def("info_json", &Model::info_json);

  py::class_<Dataset>(m, "Dataset")
      .def("__len__", &Dataset::size)
      .def("record", &Dataset::record, py::arg("index"))
      .def("image", &Dataset::image, py::arg("index"))
      .def_property_readonly("classes", &Dataset::classes)
      .def_property_readonly("attribute_names", &Dataset::attribute_names)
      .def_property_readonly("part_names", &Dataset::part_names);
  m.def("open_dataset", &open_dataset, py::arg("format"), py::arg("root"), py::arg("split"),
        py::arg("options_yaml") = "");
  m.def("dataset_splits", &dataset_splits, py::arg("format"), py::arg("root"));
  m.def("dataset_formats", &finch::data::dataset_format_names);

  py::class_<Loader>(m, "Loader")
      .def(py::init<const std::string&, const std::string&, const std::string&,
                    const std::vector<std::string>&>(),
           py::arg("recipe_yaml"), py::arg("source"), py::arg("split"), py::arg("overrides"))
      .def("start_epoch", &Loader::start_epoch, py::arg("epoch"))
      .def("next", &Loader::next)
      .def_property_readonly("num_batches", &Loader::num_batches)
      .def_property_readonly("num_samples", &Loader::num_samples)
      .def_property_readonly("batch_size", &Loader::batch_size)
      .def_property_readonly("classes", &Loader::classes)
      .def("skipped", &Loader::skipped);

  m.def(
      "read_image",
      [](const std::filesystem::path& path, int64_t max_pixels) {
        cv::Mat rgb;
        {
          py::gil_scoped_release unlocked;
          rgb = finch::io::read_image_rgb(path, max_pixels);
        }
        return to_numpy(rgb);
      },
      py::arg("path"), py::arg("max_pixels") = finch::io::kDefaultMaxPixels);
}
