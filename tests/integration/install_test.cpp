// The installed package: `cmake --install` into a temporary prefix, then the examples built
// against that prefix alone (find_package(finch CONFIG REQUIRED), finch::finch) train a model
// from a recipe, classify with it and search a gallery built with it.
#include <gtest/gtest.h>

#include <fstream>

#include "finch/core/atomic_file.h"
#include "finch/core/version.h"
#include "test_support.h"
#include "tiny_run.h"

namespace fs = std::filesystem;
using finch::test::run_command;

TEST(Install, ExamplesBuildAndRunAgainstTheInstalledPackageOnly) {
  finch::test::TempDir dir("finch-install");
  const fs::path prefix = dir.path() / "prefix", build = dir.path() / "examples";
  const fs::path build_tree = finch::test::cli_path().parent_path();
  auto result = run_command("cmake --install " + build_tree.string() + " --prefix " +
                            prefix.string() + " 2>&1");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  for (const char* file :
       {"lib/cmake/finch/finchConfig.cmake", "lib/cmake/finch/finchTargets.cmake",
        "lib/cmake/finch/finchConfigVersion.cmake", "include/finch/eval/session.h",
        "include/finch/core/version.h", "share/finch/configs/cub.yaml",
        "share/finch/configs/defaults.yaml"})
    EXPECT_TRUE(fs::exists(prefix / file)) << file;
  // The version comes from CMake's project() into the installed header and the command.
  EXPECT_CONTAINS(finch::read_file(prefix / "include/finch/core/version.h"),
                  std::string("\"") + finch::kVersion + "\"");
  result = run_command((prefix / "bin" / "finch").string() + " --version 2>&1");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_CONTAINS(result.output, finch::kVersion);

  result = run_command("cmake -S " + (finch::test::source_dir() / "examples").string() + " -B " +
                       build.string() + " -G Ninja -DCMAKE_PREFIX_PATH=" + prefix.string() +
                       // Build type None (no -O): the examples only call into the library, and
                       // unoptimised LibTorch templates compile in about half the time.
                       " -DCMAKE_BUILD_TYPE=None 2>&1 && cmake --build " + build.string() +
                       " 2>&1");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  // Linked against the installed library, not the build tree's.
  result = run_command("ldd " + (build / "classify").string());
  EXPECT_CONTAINS(result.output, (prefix / "lib").string());

  finch::test::make_pattern_imagefolder(dir.path() / "data" / "train", 3, 10, 16, 1);
  finch::test::write_text(dir.path() / "recipe.yaml",
                          finch::test::tiny_recipe("epochs: 2, batch_size: 8, progress: none"));
  result = run_command((build / "train_recipe").string() + " " +
                       (dir.path() / "recipe.yaml").string() + " " + (dir.path() / "run").string() +
                       " data.root=" + (dir.path() / "data").string() + " 2>&1");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_CONTAINS(result.output, "step 5 (epoch 2)");  // the progress callback, 3 steps an epoch
  EXPECT_CONTAINS(result.output, "best validation top-1");
  const fs::path model = dir.path() / "run" / "best.safetensors";
  ASSERT_TRUE(fs::exists(model));

  const fs::path image = *fs::directory_iterator(dir.path() / "data" / "train" / "class1");
  result = run_command((build / "classify").string() + " " + model.string() + " " + image.string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_CONTAINS(result.output, image.string() + "  class");
  result =
      run_command((build / "classify").string() + " " + model.string() + " /nonexistent.png 2>&1");
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_CONTAINS(result.output, "classify: ");

  // A gallery of the training folders: an image's nearest item is itself, in its own class.
  result = run_command((build / "gallery_search").string() + " " + model.string() + " " +
                       (dir.path() / "data" / "train").string() + " " + image.string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_CONTAINS(result.output, image.string() + "  class1 1");
}

// The installed Python package imports from the prefix alone (its extension finds the
// installed libfinch through its RPATH, not the build tree).
TEST(Install, PythonPackageImportsFromThePrefix) {
  if (!FINCH_BUILD_PYTHON) GTEST_SKIP() << "built with FINCH_BUILD_PYTHON=OFF: no Python package";
  finch::test::TempDir dir("finch-install-py");
  const fs::path prefix = dir.path() / "prefix";
  const fs::path build_tree = finch::test::cli_path().parent_path();
  auto result = run_command("cmake --install " + build_tree.string() + " --prefix " +
                            prefix.string() + " 2>&1");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  // Not /usr: the package goes to lib/python3.X/dist-packages, where Debian's python3 looks
  // under other prefixes (/usr/local).
  auto version = run_command(
      "/usr/bin/python3 -c 'import sys; print(\"%d.%d\" % sys.version_info[:2], end=\"\")'");
  ASSERT_EQ(version.exit_code, 0) << version.output;
  const fs::path package = prefix / "lib" / ("python" + version.output) / "dist-packages";
  ASSERT_TRUE(fs::exists(package / "finch" / "__init__.py"));
  result = run_command("ldd " + package.string() + "/finch/_finch*.so");
  EXPECT_CONTAINS(result.output, (prefix / "lib").string());
  result = run_command("cd / && PYTHONPATH=" + package.string() +
                       " /usr/bin/python3 -c 'import finch; print(finch.__file__, "
                       "finch.__version__)' 2>&1");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_CONTAINS(result.output, package.string());
  EXPECT_CONTAINS(result.output, finch::kVersion);
}
