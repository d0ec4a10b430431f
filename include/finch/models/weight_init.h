#pragma once
// Building a model whose weights are loaded next, without drawing random ones first.
namespace finch::models {

/// While alive, models built on this thread skip their random initialisation and leave the
/// affected parameters uninitialised: for a model whose every weight is loaded next
/// (load_state_dict refuses weights that miss any). ResNet-50's random draws took 75-150 ms
/// of a 0.8 s `finch predict`.
class SkipRandomInit {
 public:
  SkipRandomInit();
  ~SkipRandomInit();
  SkipRandomInit(const SkipRandomInit&) = delete;
  SkipRandomInit& operator=(const SkipRandomInit&) = delete;

 private:
  bool previous_;
};

/// False inside a SkipRandomInit on this thread.
bool random_init_enabled();

}  // namespace finch::models
