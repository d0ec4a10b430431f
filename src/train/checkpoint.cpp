#include "finch/train/checkpoint.h"

#include <torch/serialize.h>

#include "finch/core/atomic_file.h"
#include "finch/core/error.h"
#include "finch/io/safetensors.h"

namespace finch::train {

namespace fs = std::filesystem;

nlohmann::json TrainState::to_json() const {
  return {{"epoch", epoch},
          {"batches_done", batches_done},
          {"global_step", global_step},
          {"best_val_acc", best_val_acc},
          {"best_epoch", best_epoch},
          {"loss_sum", loss_sum},
          {"correct", correct},
          {"seen", seen},
          {"train_seconds", train_seconds}};
}

TrainState TrainState::from_json(const nlohmann::json& j) {
  TrainState s;
  s.epoch = j.at("epoch");
  s.batches_done = j.at("batches_done");
  s.global_step = j.at("global_step");
  s.best_val_acc = j.at("best_val_acc");
  s.best_epoch = j.at("best_epoch");
  s.loss_sum = j.at("loss_sum");
  s.correct = j.at("correct");
  s.seen = j.at("seen");
  s.train_seconds = j.at("train_seconds");
  return s;
}

namespace {

std::vector<std::pair<std::string, torch::Tensor>> cpu_state(const torch::nn::Module& module) {
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (auto& [name, tensor] : models::state_dict(module))
    tensors.emplace_back(name, tensor.detach().to(torch::kCPU).contiguous());
  return tensors;
}

}  // namespace

void save_checkpoint(const fs::path& run_dir, models::Classifier& model,
                     torch::optim::Optimizer& optimizer, const TrainState& state,
                     const torch::nn::Module* objective) {
  const fs::path fresh = run_dir / "checkpoint.new", current = run_dir / "checkpoint",
                 old = run_dir / "checkpoint.old";
  fs::remove_all(fresh);
  fs::create_directories(fresh);
  io::write_safetensors(fresh / "model.safetensors", cpu_state(*model),
                        {{"format", "finch-checkpoint"}});
  if (objective) {
    io::write_safetensors(fresh / "objective.safetensors", cpu_state(*objective),
                          {{"format", "finch-checkpoint"}});
  }
  write_atomic_with(fresh / "optimizer.pt",
                    [&](const fs::path& tmp) { torch::save(optimizer, tmp.string()); });
  write_file_atomic(fresh / "state.json", state.to_json().dump(2) + "\n");
  fs::remove_all(old);
  if (fs::exists(current)) fs::rename(current, old);
  fs::rename(fresh, current);
  fs::remove_all(old);
}

std::optional<TrainState> load_checkpoint(const fs::path& run_dir, models::Classifier& model,
                                          torch::optim::Optimizer& optimizer,
                                          torch::nn::Module* objective) {
  fs::path dir = run_dir / "checkpoint";
  if (!fs::exists(dir / "state.json")) dir = run_dir / "checkpoint.old";  // crashed mid-swap
  if (!fs::exists(dir / "state.json")) return std::nullopt;
  TrainState state;
  try {
    state = TrainState::from_json(nlohmann::json::parse(read_file(dir / "state.json")));
  } catch (const nlohmann::json::exception& e) {
    throw Error((dir / "state.json").string() + " is damaged: " + e.what());
  }
  io::TensorFile weights = io::read_safetensors(dir / "model.safetensors");
  models::load_state_dict(*model, weights.tensors, (dir / "model.safetensors").string());
  try {
    torch::load(optimizer, (dir / "optimizer.pt").string());
  } catch (const c10::Error& e) {
    throw Error((dir / "optimizer.pt").string() +
                " cannot be loaded: " + e.what_without_backtrace());
  }
  if (objective && !models::state_dict(*objective).empty()) {
    const fs::path file = dir / "objective.safetensors";
    if (!fs::exists(file))
      throw Error(file.string() +
                  " is missing: the checkpoint was written without the loss "
                  "state (centres) this configuration needs; resume with the run's config.yaml");
    models::load_state_dict(*objective, io::read_safetensors(file).tensors, file.string());
  }
  return state;
}

}  // namespace finch::train
