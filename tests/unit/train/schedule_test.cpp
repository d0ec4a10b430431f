#include <gtest/gtest.h>

#include <sstream>

#include "finch/core/config.h"
#include "finch/core/error.h"
#include "finch/train/optim.h"
#include "test_support.h"

using finch::Config;
using finch::train::LrSchedule;

namespace {

Config schedule_config(const std::string& yaml) {
  return Config::from_yaml("optim: {lr: 1.0}\nschedule: " + yaml, "test");
}

}  // namespace

TEST(Schedule, OneCycleMatchesPyTorch) {
  const int total = 100;
  std::string out = finch::test::run_python_reference("schedule_reference.py", "100 0.25 25 10000");
  std::istringstream in(out);
  LrSchedule schedule(
      schedule_config("{name: onecycle, pct_start: 0.25, div_factor: 25, final_div_factor: 10000}"),
      10, total);
  for (int step = 0; step < total; ++step) {
    double expected;
    ASSERT_TRUE(in >> expected) << "reference printed too few values: " << out;
    EXPECT_NEAR(schedule.factor(step), expected, 1e-9) << "step " << step;
  }
}

TEST(Schedule, StepMultiStepCosineAndWarmup) {
  LrSchedule step(schedule_config("{name: step, step_size: 2, gamma: 0.5}"), 10, 100);
  EXPECT_DOUBLE_EQ(step.factor(0), 1.0);
  EXPECT_DOUBLE_EQ(step.factor(19), 1.0);
  EXPECT_DOUBLE_EQ(step.factor(20), 0.5);
  EXPECT_DOUBLE_EQ(step.factor(45), 0.25);

  LrSchedule multi(schedule_config("{name: multistep, milestones: [3, 5], gamma: 0.1}"), 10, 100);
  EXPECT_DOUBLE_EQ(multi.factor(29), 1.0);
  EXPECT_NEAR(multi.factor(30), 0.1, 1e-12);
  EXPECT_NEAR(multi.factor(50), 0.01, 1e-12);

  LrSchedule cosine(
      schedule_config("{name: cosine, warmup_epochs: 1, warmup_start_factor: 0.1, min_lr: 0.0}"),
      10, 110);
  EXPECT_DOUBLE_EQ(cosine.factor(0), 0.1);
  EXPECT_NEAR(cosine.factor(5), 0.55, 1e-12);
  EXPECT_NEAR(cosine.factor(10), 1.0, 1e-12);
  EXPECT_NEAR(cosine.factor(60), 0.5, 1e-12);  // half-way through the cosine part
  EXPECT_NEAR(cosine.factor(110), 0.0, 1e-12);

  LrSchedule constant(schedule_config("{name: constant}"), 10, 100);
  EXPECT_DOUBLE_EQ(constant.factor(77), 1.0);
}

TEST(Schedule, UnknownNameIsAnError) {
  EXPECT_THROW(LrSchedule(schedule_config("{name: triangle}"), 10, 100), finch::Error);
}
