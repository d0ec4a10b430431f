// Loading pretrained weights written by other tools: name mapping, classifier replacement,
// strictness, and the PyTorch file formats LibTorch can and cannot read.
#include "finch/models/pretrained.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "finch/core/error.h"
#include "finch/io/safetensors.h"
#include "finch/models/model.h"
#include "test_support.h"

namespace fm = finch::models;

namespace {

fm::Classifier resnet18(int64_t classes) {
  return fm::build_classifier(
      {{"backbone", "resnet18"}, {"head", "linear"}, {"num_classes", classes}});
}

// The classifier's weights under torchvision's names ("conv1.weight", "fc.bias"), each with
// `prefix` in front (DataParallel's "module.", Lightning's "model.").
fm::StateDict torchvision_names(fm::Classifier& model, const std::string& prefix) {
  fm::StateDict out;
  for (const auto& [name, tensor] : fm::state_dict(*model)) {
    std::string tv = name.rfind("backbone.", 0) == 0 ? name.substr(9) : "fc." + name.substr(8);
    out.emplace_back(prefix + tv, tensor.clone());
  }
  return out;
}

}  // namespace

TEST(Pretrained, MapsTorchvisionNamesAndReplacesAnotherClassifier) {
  auto source = resnet18(1000);
  auto target = resnet18(7);
  auto report = fm::load_pretrained(target, torchvision_names(source, "module."), "w", false);
  EXPECT_EQ(report.reinitialised.size(), 2u);  // fc.weight and fc.bias: 1000 vs 7 classes
  EXPECT_TRUE(report.missing.empty());
  EXPECT_TRUE(report.unexpected.empty());
  EXPECT_EQ(report.loaded.size(), fm::state_dict(*target).size() - 2);
  auto a = source->named_parameters(), b = target->named_parameters();
  EXPECT_TRUE(a["backbone.layer4.1.conv2.weight"].equal(b["backbone.layer4.1.conv2.weight"]));
  EXPECT_TRUE(source->named_buffers()["backbone.bn1.running_var"].equal(
      target->named_buffers()["backbone.bn1.running_var"]));
  EXPECT_CONTAINS(report.summary(), "head.fc.weight (model 7x512, file 1000x512)");

  // Same class count: the classifier loads too, and strict mode is satisfied.
  auto same = resnet18(1000);
  auto strict = fm::load_pretrained(same, torchvision_names(source, "model."), "w", true);
  EXPECT_EQ(strict.loaded.size(), fm::state_dict(*same).size());
  EXPECT_TRUE(source->named_parameters()["head.fc.weight"].equal(
      same->named_parameters()["head.fc.weight"]));
}

TEST(Pretrained, FinchNamesLoadUnchanged) {
  auto source = resnet18(4);
  auto target = resnet18(4);
  auto report = fm::load_pretrained(target, fm::state_dict(*source), "finch.safetensors", true);
  EXPECT_EQ(report.loaded.size(), fm::state_dict(*target).size());
}

TEST(Pretrained, StrictModeAndWrongArchitectureAreErrors) {
  auto source = resnet18(1000);
  auto weights = torchvision_names(source, "");
  weights.pop_back();  // drop one tensor
  weights.emplace_back("extra.weight", torch::zeros({3}));
  auto target = resnet18(1000);
  auto report = fm::load_pretrained(target, weights, "w", false);
  EXPECT_EQ(report.missing.size(), 1u);
  ASSERT_EQ(report.unexpected.size(), 1u);
  EXPECT_EQ(report.unexpected[0], "extra.weight");
  EXPECT_CONTAINS(finch::test::error_of([&] { fm::load_pretrained(target, weights, "w", true); }),
                  "strict loading failed");
  auto resnet50 =
      fm::build_classifier({{"backbone", "resnet50"}, {"head", "linear"}, {"num_classes", 1000}});
  // resnet18 weights into resnet50: same names for the stem, other shapes everywhere else.
  auto mismatch = fm::load_pretrained(resnet50, torchvision_names(source, ""), "r18", false);
  EXPECT_FALSE(mismatch.mismatched.empty());
  fm::StateDict unrelated = {{"encoder.block.0.weight", torch::zeros({2})}};
  EXPECT_CONTAINS(
      finch::test::error_of([&] { fm::load_pretrained(target, unrelated, "other.pth", false); }),
      "none of its 1 tensors match");
}

TEST(Pretrained, ReadsSafetensorsAndPlainDictPthFiles) {
  finch::test::TempDir dir;
  auto source = resnet18(3);
  finch::io::write_safetensors(dir / "w.safetensors", torchvision_names(source, ""), {});
  EXPECT_EQ(fm::read_weights_file(dir / "w.safetensors").size(), fm::state_dict(*source).size());

  // A plain dict in PyTorch's zip format (what LibTorch can read) and a training checkpoint.
  auto result = finch::test::run_command(
      "/usr/bin/python3 -c \"import torch, torchvision; "
      "sd = torchvision.models.resnet18(num_classes=3).state_dict(); "
      "torch.save(dict(sd), '" +
      (dir / "plain.pth").string() +
      "'); "
      "torch.save({'epoch': 3, 'state_dict': dict(sd)}, '" +
      (dir / "ckpt.pt").string() +
      "'); "
      "torch.save(sd, '" +
      (dir / "ordered.pth").string() + "')\"");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  auto plain = fm::read_weights_file(dir / "plain.pth");
  EXPECT_EQ(plain.size(), fm::state_dict(*source).size());
  auto target = resnet18(3);
  EXPECT_NO_THROW(fm::load_pretrained(target, plain, "plain.pth", true));
  EXPECT_EQ(fm::read_weights_file(dir / "ckpt.pt").size(), plain.size());

  // torch.save(model.state_dict()) writes an OrderedDict: the error gives the conversion,
  // and the converted file loads.
  const std::string error =
      finch::test::error_of([&] { fm::read_weights_file(dir / "ordered.pth"); });
  EXPECT_CONTAINS(error, "scripts/pth_to_safetensors.py");
  auto convert = finch::test::run_command(
      "/usr/bin/python3 " +
      (finch::test::source_dir() / "scripts" / "pth_to_safetensors.py").string() + " " +
      (dir / "ordered.pth").string() + " " + (dir / "ordered.safetensors").string());
  ASSERT_EQ(convert.exit_code, 0) << convert.output;
  auto converted = fm::read_weights_file(dir / "ordered.safetensors");
  EXPECT_NO_THROW(fm::load_pretrained(target, converted, "ordered.safetensors", true));

  finch::test::write_text(dir / "junk.pth", "not a zip file");
  EXPECT_CONTAINS(finch::test::error_of([&] { fm::read_weights_file(dir / "junk.pth"); }),
                  "not a PyTorch zip file");
  EXPECT_CONTAINS(finch::test::error_of([&] { fm::read_weights_file(dir / "missing.pth"); }),
                  "not found");
  finch::test::write_text(dir / "w.onnx", "onnx");
  EXPECT_CONTAINS(finch::test::error_of([&] { fm::read_weights_file(dir / "w.onnx"); }),
                  "unknown weights format");
}
