#include "finch/models/batchnorm.h"

#include <torch/torch.h>

// Debian's libtorch_cpu does not export BatchNormImplBase<2, BatchNorm2dImpl>::pretty_print,
// which the vtables of any class derived from BatchNorm2dImpl refer to; this definition (the
// text LibTorch prints) satisfies them.
template <>
void torch::nn::BatchNormImplBase<2, torch::nn::BatchNorm2dImpl>::pretty_print(
    std::ostream& stream) const {
  stream << "torch::nn::BatchNorm2d(" << this->options.num_features() << ", "
         << "eps=" << this->options.eps() << ", "
         << "momentum=" << this->options.momentum().value_or(0.1) << ", "
         << "affine=" << this->options.affine() << ", "
         << "track_running_stats=" << this->options.track_running_stats() << ")";
}

namespace finch::models {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// y = (x - mean) / sqrt(var + eps) * weight + bias with mean and (biased) var over the global
// batch. Backward, for the loss summed over ranks (each rank's loss is its own mean and the
// gradient reducer averages parameter gradients, which makes it the global mean, as in DDP):
// dx = weight * invstd * (dy - sum(dy) / M - xhat * sum(dy * xhat) / M), the sums over every
// rank's samples (M of them), as torch.nn.SyncBatchNorm computes it.
struct SyncBatchNormFunction : public torch::autograd::Function<SyncBatchNormFunction> {
  static variable_list forward(AutogradContext* ctx, torch::Tensor x, torch::Tensor weight,
                               torch::Tensor bias, torch::Tensor mean, torch::Tensor invstd,
                               torch::Tensor count, BatchStatsSync* sync) {
    // `sync` outlives the step (the trainer owns it); autograd saves it as a plain address.
    ctx->saved_data["sync"] = reinterpret_cast<int64_t>(sync);
    ctx->save_for_backward({x, weight, mean, invstd, count});
    const auto shape = std::vector<int64_t>{1, -1, 1, 1};
    auto y = (x - mean.view(shape)) * invstd.view(shape);
    if (weight.defined()) y = y * weight.view(shape) + bias.view(shape);
    return {y};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    auto* sync = reinterpret_cast<BatchStatsSync*>(ctx->saved_data["sync"].toInt());
    const auto saved = ctx->get_saved_variables();
    const auto &x = saved[0], &weight = saved[1], &mean = saved[2], &invstd = saved[3],
               &count = saved[4];
    const auto shape = std::vector<int64_t>{1, -1, 1, 1};
    const torch::Tensor dy = grad_outputs[0];
    const torch::Tensor xhat = (x - mean.view(shape)) * invstd.view(shape);
    const torch::Tensor local_dy = dy.sum({0, 2, 3});
    const torch::Tensor local_dy_xhat = (dy * xhat).sum({0, 2, 3});
    torch::Tensor sums = torch::stack({local_dy, local_dy_xhat}).to(torch::kDouble);
    sync->all_reduce_sum(sums);
    sums = sums.to(x.scalar_type());
    const torch::Tensor m = count.to(x.scalar_type());
    torch::Tensor scale = invstd;
    if (weight.defined()) scale = scale * weight;
    const torch::Tensor dx =
        scale.view(shape) * (dy - (sums[0] / m).view(shape) - xhat * (sums[1] / m).view(shape));
    torch::Tensor dweight, dbias;
    if (weight.defined()) {
      dweight = local_dy_xhat;
      dbias = local_dy;
    }
    return {dx, dweight, dbias, torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor BatchNorm2dImpl::forward(const torch::Tensor& input) {
  if (!sync || !is_training()) return torch::nn::BatchNorm2dImpl::forward(input);
  TORCH_CHECK(input.dim() == 4, "expected a [N, C, H, W] input, got ", input.sizes());
  // Global sums in float64 (sum, sum of squares, count) with one all-reduce.
  torch::Tensor x64 = input.detach().to(torch::kDouble);
  const int64_t channels = input.size(1);
  torch::Tensor stats =
      torch::cat({x64.sum({0, 2, 3}), (x64 * x64).sum({0, 2, 3}),
                  torch::full({1}, static_cast<double>(input.numel() / channels), torch::kDouble)});
  sync->all_reduce_sum(stats);
  const torch::Tensor count = stats.slice(0, 2 * channels);
  const torch::Tensor mean64 = stats.slice(0, 0, channels) / count;
  const torch::Tensor var64 =
      (stats.slice(0, channels, 2 * channels) / count - mean64 * mean64).clamp_min(0);
  const double eps = options.eps();
  const torch::Tensor mean = mean64.to(input.scalar_type());
  const torch::Tensor invstd = (var64 + eps).rsqrt().to(input.scalar_type());
  if (options.track_running_stats()) {
    torch::NoGradGuard no_grad;
    const double momentum = options.momentum().value_or(0.1);
    const double n = count.item<double>();
    const torch::Tensor unbiased = var64 * (n / std::max(1.0, n - 1));
    running_mean.mul_(1 - momentum).add_(mean64.to(running_mean.scalar_type()), momentum);
    running_var.mul_(1 - momentum).add_(unbiased.to(running_var.scalar_type()), momentum);
    num_batches_tracked.add_(1);
  }
  return SyncBatchNormFunction::apply(input, options.affine() ? weight : torch::Tensor(),
                                      options.affine() ? bias : torch::Tensor(), mean, invstd,
                                      count, sync.get())[0];
}

int64_t set_batch_stats_sync(torch::nn::Module& module,
                             const std::shared_ptr<BatchStatsSync>& sync) {
  int64_t n = 0;
  for (const auto& child : module.modules(/*include_self=*/true)) {
    if (auto* bn = child->as<BatchNorm2dImpl>()) {
      bn->sync = sync;
      ++n;
    }
  }
  return n;
}

}  // namespace finch::models
