// Classify images with a finch model file: the top 3 classes of each image.
//   classify MODEL.safetensors IMAGE...
#include <finch/core/error.h>
#include <finch/eval/session.h>
#include <finch/io/image.h>

#include <iostream>

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: classify MODEL.safetensors IMAGE...\n";
    return 2;
  }
  try {
    // The session applies the model file's own evaluation preprocessing.
    finch::eval::InferenceSession session(argv[1]);
    for (int i = 2; i < argc; ++i) {
      const cv::Mat rgb = finch::io::read_image_rgb(argv[i]);
      const auto output = session.run({rgb});
      const auto best = finch::eval::top_k(output.probabilities, session.classes(), 3);
      std::cout << argv[i];
      for (const auto& c : best[0]) std::cout << "  " << c.name << " " << c.prob;
      std::cout << "\n";
    }
  } catch (const finch::Error& e) {  // every bad input ends here, with a message saying why
    std::cerr << "classify: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
