// CAM -> box, the eval-transform geometry, IoU and CorLoc, against hand-computed values.
#include "finch/explain/localize.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "test_support.h"

namespace fe = finch::explain;
using finch::data::Box;

namespace {

void expect_box(const Box& b, float x, float y, float w, float h, float tol = 1e-3f) {
  EXPECT_NEAR(b.x, x, tol);
  EXPECT_NEAR(b.y, y, tol);
  EXPECT_NEAR(b.width, w, tol);
  EXPECT_NEAR(b.height, h, tol);
}

}  // namespace

TEST(Localize, LargestComponentAboveTheThreshold) {
  // A 2 x 3 block at (x 1, y 1) of value 1, and one isolated pixel of 0.9 at (5, 5); at the
  // map's own resolution the upsampling is the identity.
  auto cam = torch::zeros({6, 6});
  cam.index_put_({torch::indexing::Slice(1, 3), torch::indexing::Slice(1, 4)}, 1.0);
  cam[5][5] = 0.9;
  expect_box(fe::cam_to_box(cam, 0.5, 6, 6), 1, 1, 3, 2);
  // With the block lowered to 0.5, a threshold of 0.6 * max (0.54) keeps only the pixel.
  cam.index_put_({torch::indexing::Slice(1, 3), torch::indexing::Slice(1, 4)}, 0.5);
  expect_box(fe::cam_to_box(cam, 0.6, 6, 6), 5, 5, 1, 1);
  // A zero map: the whole image.
  expect_box(fe::cam_to_box(torch::zeros({3, 3}), 0.2, 12, 8), 0, 0, 12, 8);
}

TEST(Localize, UpsamplesBeforeThresholding) {
  // 2 x 2 map [[1, 0], [0, 0]] -> 4 x 4 bilinear (half-pixel centres): row/col weights
  // 1, .75, .25, 0 so values >= 0.5 are the 2 x 2 top-left block.
  auto cam = torch::tensor({1.f, 0.f, 0.f, 0.f}).view({2, 2});
  expect_box(fe::cam_to_box(cam, 0.5, 4, 4), 0, 0, 2, 2);
}

TEST(Localize, IouAndCorLoc) {
  EXPECT_NEAR(fe::iou({0, 0, 10, 10}, {5, 5, 10, 10}), 25.0 / 175.0, 1e-12);
  EXPECT_NEAR(fe::iou({0, 0, 10, 10}, {0, 0, 10, 10}), 1.0, 1e-12);
  EXPECT_EQ(fe::iou({0, 0, 10, 10}, {10, 0, 5, 5}), 0.0);  // touching edges
  EXPECT_EQ(fe::iou({0, 0, 0, 0}, {0, 0, 0, 0}), 0.0);
  auto s = fe::summarize_localization({0.5, 0.49, 1.0, 0.0});
  EXPECT_EQ(s.images, 4u);
  EXPECT_DOUBLE_EQ(s.corloc, 0.5);  // IoU 0.5 counts
  EXPECT_NEAR(s.mean_iou, 1.99 / 4, 1e-12);
  EXPECT_EQ(fe::summarize_localization({}).corloc, 0.0);
}

TEST(Localize, GeometryOfResizeAndCenterCrop) {
  // 512 x 384 (w x h): shorter side 384 -> 256, longer int(256 * 512 / 384) = 341; the
  // 224 crop starts at round(58.5) = 58 (half to even) and 16.
  auto transforms = nlohmann::json::parse(
      R"([{"type": "resize", "size": 256}, {"type": "center_crop", "size": 224}])");
  auto g = fe::input_geometry(transforms, 512, 384);
  EXPECT_EQ(g.input_width, 224);
  EXPECT_EQ(g.input_height, 224);
  auto b = fe::to_original({0, 0, 224, 224}, g, 512, 384);
  expect_box(b, 58 * 512.0 / 341, 24, (58 + 224) * 512.0 / 341 - 58 * 512.0 / 341, 336);
  // A fixed [h, w] resize only scales; boxes past the image are clipped.
  auto g2 = fe::input_geometry(nlohmann::json::parse(R"([{"type": "resize", "size": [28, 56]}])"),
                               112, 56);
  expect_box(fe::to_original({14, 7, 28, 14}, g2, 112, 56), 28, 14, 56, 28);
  expect_box(fe::to_original({40, -5, 30, 10}, g2, 112, 56), 80, 0, 32, 10);
  EXPECT_CONTAINS(finch::test::error_of([] {
                    fe::input_geometry(nlohmann::json::parse(R"([{"type": "rotation"}])"), 8, 8);
                  }),
                  "rotation");
}

// Pointing game: the peak of the upsampled map, at pixel centres, tested against a box.
TEST(Localize, PeakOfTheUpsampledMap) {
  torch::Tensor cam = torch::zeros({4, 4});
  cam[1][2] = 1.0;  // cell (row 1, column 2) of 4 x 4 = pixels x in [4, 6), y in [2, 4) at 8 x 8
  const auto [x, y] = finch::explain::cam_peak(cam, 8, 8);
  EXPECT_GE(x, 4.0);
  EXPECT_LE(x, 6.0);
  EXPECT_GE(y, 2.0);
  EXPECT_LE(y, 4.0);
  EXPECT_TRUE(finch::explain::inside({4, 2, 2, 2}, x, y));
  EXPECT_FALSE(finch::explain::inside({0, 0, 2, 2}, x, y));
  EXPECT_TRUE(finch::explain::inside({0, 0, 2, 2}, 2.0, 2.0));  // edges count as inside
}
