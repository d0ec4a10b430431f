// The per-epoch health check (train/health.h): what counts as diverging or at chance.
#include "finch/train/health.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

using finch::train::diagnose_epoch;

TEST(EpochHealth, HealthyEpochsPassQuietly) {
  EXPECT_FALSE(diagnose_epoch({1, 10, 0.9, 0.7, 2.30}));
  // A multi-term objective (WS-DAN) far above ln C but near its own start.
  EXPECT_FALSE(diagnose_epoch({1, 5, 6.1, 0.37, 1.9}));
  // Two classes: accuracy near chance is not judged (too noisy to call).
  EXPECT_FALSE(diagnose_epoch({1, 2, 0.69, 0.5, 0.69}));
}

TEST(EpochHealth, DivergingLossIsReportedWithWhatToTry) {
  const auto w = diagnose_epoch({2, 10, 819.0, 0.22, 2.3});
  ASSERT_TRUE(w);
  EXPECT_NE(w->find("diverging"), std::string::npos);
  EXPECT_NE(w->find("optim.lr"), std::string::npos);
  EXPECT_NE(w->find("clip_grad_norm"), std::string::npos);
  // Measured against ln C when the first loss is unknown (an old checkpoint) or small.
  EXPECT_TRUE(diagnose_epoch({1, 10, 24.0, 0.5, 0.0}));
  EXPECT_FALSE(diagnose_epoch({1, 10, 22.0, 0.5, 0.0}));
  EXPECT_TRUE(diagnose_epoch({1, 10, std::numeric_limits<double>::quiet_NaN(), 0.5, 2.3}));
}

TEST(EpochHealth, ChanceAccuracyIsReported) {
  const auto w = diagnose_epoch({1, 10, 2.30, 0.11, 2.30});
  ASSERT_TRUE(w);
  EXPECT_NE(w->find("at chance"), std::string::npos);
  EXPECT_FALSE(diagnose_epoch({1, 10, 2.0, 0.16, 2.30}));  // above 1.5 / C
}

TEST(EpochHealth, ValidationAtChanceWhileTrainingLearnsIsReportedAfterTheFirstEpoch) {
  // Epoch 1 of 3 at the one-cycle peak: BatchNorm statistics may catch up; no warning yet.
  EXPECT_FALSE(diagnose_epoch({1, 5, 1.3, 0.5, 1.9, 0.2, false}));
  const auto w = diagnose_epoch({2, 5, 1.0, 0.7, 1.9, 0.2, false});
  ASSERT_TRUE(w);
  EXPECT_NE(w->find("BatchNorm"), std::string::npos);
  // A one-epoch run (MobileNetV3 from scratch: train 0.76, val 0.10) is judged at its end.
  EXPECT_TRUE(diagnose_epoch({1, 10, 0.65, 0.76, 2.3, 0.10, true}));
  EXPECT_FALSE(diagnose_epoch({2, 5, 1.0, 0.6, 1.9, -1, true}));  // no validation data
}
