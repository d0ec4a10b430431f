#include "finch/eval/evaluate.h"

#include <torch/torch.h>

namespace finch::eval {

Metrics evaluate(models::Classifier& model, data::Loader& loader, const torch::Device& device,
                 ProgressStyle progress_style, const std::string& label) {
  const bool was_training = model->is_training();
  model->eval();
  torch::NoGradGuard no_grad;
  MetricsAccumulator metrics(loader.dataset().class_names());
  Progress progress(label, loader.num_batches(), progress_style);
  loader.start_epoch(0);
  int64_t done = 0;
  while (auto batch = loader.next()) {
    auto output = model->forward(batch->images.to(device));
    metrics.add(output.logits, batch->labels);
    progress.update(++done, "");
  }
  if (was_training) model->train();
  Metrics result = metrics.finish();
  progress.finish("");
  return result;
}

}  // namespace finch::eval
