#include "finch/train/checkpoint.h"

#include <fmt/format.h>
#include <torch/serialize.h>

#include <sstream>

#include "finch/core/atomic_file.h"
#include "finch/core/error.h"
#include "finch/core/sha256.h"
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
          {"train_seconds", train_seconds},
          {"global_batch", global_batch},
          {"initial_loss", initial_loss}};
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
  s.global_batch = j.value("global_batch", int64_t{0});  // absent before data parallelism
  s.initial_loss = j.value("initial_loss", 0.0);         // absent before health checks
  return s;
}

namespace {

std::vector<std::pair<std::string, torch::Tensor>> cpu_state(const torch::nn::Module& module) {
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (auto& [name, tensor] : models::state_dict(module))
    tensors.emplace_back(name, tensor.detach().to(torch::kCPU).contiguous());
  return tensors;
}

// state.json records the SHA-256 of every other file of the checkpoint, so a file damaged
// on disk after it was written (bit rot, a bad copy, a truncated sync) is caught on resume
// instead of training on garbage or failing deep inside a deserializer.
constexpr const char* kChecksumsKey = "sha256";

std::string continue_hint(const fs::path& run_dir) {
  const std::string last = (run_dir / "last.safetensors").string();
  return fmt::format(
      "the weights of the last finished epoch are in {}; continue from them with `finch train "
      "--config {} --set model.pretrained={} --out NEW_RUN` (the optimizer state restarts)",
      last, (run_dir / "config.yaml").string(), last);
}

void verify_checksums(const fs::path& dir, const nlohmann::json& state_json) {
  if (!state_json.contains(kChecksumsKey)) return;  // written before checksums existed
  const fs::path run_dir = dir.parent_path();
  for (const auto& [name, expected] : state_json.at(kChecksumsKey).items()) {
    const fs::path file = dir / name;
    const std::string actual = fs::exists(file) ? sha256_file(file) : "";
    if (actual == expected.get<std::string>()) continue;
    throw Error(fmt::format(
        "{} is {}: its SHA-256 differs from the one {} recorded when the checkpoint was "
        "written; {}",
        file.string(), actual.empty() ? "missing" : "damaged", (dir / "state.json").string(),
        continue_hint(run_dir)));
  }
}

}  // namespace

void save_checkpoint(const fs::path& run_dir, models::Classifier& model,
                     torch::optim::Optimizer& optimizer, const TrainState& state,
                     const torch::nn::Module* objective) {
  const fs::path fresh = run_dir / "checkpoint.new", current = run_dir / "checkpoint",
                 old = run_dir / "checkpoint.old";
  try {
    fs::remove_all(fresh);
    fs::create_directories(fresh);
    io::write_safetensors(fresh / "model.safetensors", cpu_state(*model),
                          {{"format", "finch-checkpoint"}});
    if (objective) {
      io::write_safetensors(fresh / "objective.safetensors", cpu_state(*objective),
                            {{"format", "finch-checkpoint"}});
    }
    // Serialized in memory and written by us: LibTorch's file writer throws from its
    // destructor when the disk fills up, which terminates the process.
    std::ostringstream optimizer_bytes;
    torch::save(optimizer, optimizer_bytes);
    write_file_atomic(fresh / "optimizer.pt", optimizer_bytes.str());
    nlohmann::json state_json = state.to_json();
    for (const auto& entry : fs::directory_iterator(fresh))
      state_json[kChecksumsKey][entry.path().filename().string()] = sha256_file(entry.path());
    write_file_atomic(fresh / "state.json", state_json.dump(2) + "\n");
  } catch (const std::exception& e) {
    std::error_code ec;
    fs::remove_all(fresh, ec);  // frees the space the partial checkpoint took
    throw Error(std::string(e.what()) + "; the checkpoint in " + current.string() +
                (fs::exists(current / "state.json") ? " is intact: free space, then resume"
                                                    : " was not written"));
  }
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
  nlohmann::json state_json;
  try {
    state_json = nlohmann::json::parse(read_file(dir / "state.json"));
    state = TrainState::from_json(state_json);
  } catch (const nlohmann::json::exception& e) {
    throw Error((dir / "state.json").string() + " is damaged (" + e.what() + "); " +
                continue_hint(run_dir));
  }
  verify_checksums(dir, state_json);
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
