// Taxonomy-aware metrics on a hand-computed confusion matrix, and the hierarchy readers
// (class,parent CSV; Aircraft label files joined by image id; their errors).
#include "finch/eval/hierarchy.h"

#include <gtest/gtest.h>

#include "finch/core/config.h"
#include "finch/core/error.h"
#include "test_support.h"

namespace fd = finch::data;
using finch::test::error_of;
using finch::test::write_text;

namespace {

// sparrow_a, sparrow_b (Passer, Passeridae); finch_a (Fringilla, Fringillidae);
// gull_a (Larus, Laridae). Three levels: genus, family, and a shared order for two of them.
const std::vector<std::string> kClasses{"sparrow_a", "sparrow_b", "finch_a", "gull_a"};
const std::vector<std::pair<std::string, std::string>> kEdges{{"sparrow_a", "Passer"},
                                                              {"sparrow_b", "Passer"},
                                                              {"finch_a", "Fringilla"},
                                                              {"gull_a", "Larus"},
                                                              {"Passer", "Passeridae"},
                                                              {"Fringilla", "Fringillidae"},
                                                              {"Larus", "Laridae"},
                                                              {"Passeridae", "Passeriformes"},
                                                              {"Fringillidae", "Passeriformes"},
                                                              {"Laridae", "Charadriiformes"}};

}  // namespace

TEST(Hierarchy, AccuracyPerLevelAndMistakeHeights) {
  const auto h = fd::hierarchy_from_parents(kClasses, kEdges, {"genus", "family"}, "test");
  EXPECT_EQ(h.levels, (std::vector<std::string>{"genus", "family", "level 3"}));
  EXPECT_EQ(h.ancestors[2],
            (std::vector<std::string>{"Fringilla", "Fringillidae", "Passeriformes"}));
  // true \ predicted: sparrow_a: 5 right, 3 -> sparrow_b (height 1), 2 -> finch_a (height 3)
  //                   gull_a:    4 right, 1 -> sparrow_a (no common ancestor: height 4)
  const std::vector<std::vector<int64_t>> confusion{
      {5, 3, 2, 0}, {0, 0, 0, 0}, {0, 0, 0, 0}, {1, 0, 0, 4}};
  const auto m = finch::eval::hierarchical_metrics(confusion, h);
  EXPECT_EQ(m.levels, (std::vector<std::string>{"class", "genus", "family", "level 3"}));
  EXPECT_EQ(m.samples, 15);
  EXPECT_EQ(m.mistakes, 6);
  EXPECT_DOUBLE_EQ(m.accuracy[0], 9.0 / 15);
  EXPECT_DOUBLE_EQ(m.accuracy[1], 12.0 / 15);  // + the 3 sibling mistakes
  EXPECT_DOUBLE_EQ(m.accuracy[2], 12.0 / 15);
  EXPECT_DOUBLE_EQ(m.accuracy[3], 14.0 / 15);  // + the 2 inside Passeriformes
  EXPECT_EQ(m.mistakes_by_height, (std::vector<int64_t>{3, 0, 2, 1}));
  EXPECT_DOUBLE_EQ(m.mean_mistake_height, (3 * 1 + 2 * 3 + 1 * 4) / 6.0);
  ASSERT_EQ(m.by_parent.size(), 3u);
  EXPECT_EQ(m.by_parent[0].parent, "Passer");
  EXPECT_EQ(m.by_parent[0].support, 10);
  EXPECT_EQ(m.by_parent[0].wrong_within, 3);
  EXPECT_EQ(m.by_parent[0].wrong_outside, 2);
  EXPECT_EQ(m.by_parent[2].parent, "Larus");
  EXPECT_EQ(m.by_parent[2].wrong_outside, 1);
}

TEST(Hierarchy, CsvReaderAndItsErrors) {
  finch::test::TempDir dir("finch-hierarchy");
  const auto file = dir.path() / "h.csv";
  write_text(file,
             "class,parent\nsparrow_a,Passer\n\"sparrow_b\",Passer\nfinch_a,Fringilla\n"
             "gull_a,Larus\nPasser,Passeridae\n");
  const auto h = fd::read_hierarchy_csv(file, kClasses);
  EXPECT_EQ(h.levels, (std::vector<std::string>{"parent", "grandparent"}));
  // Chains of different depth: Fringilla has no parent, so it stays at the level above.
  EXPECT_EQ(h.ancestors[2], (std::vector<std::string>{"Fringilla", "Fringilla"}));
  write_text(file, "sparrow_a,Passer\nsparrow_b\n");
  EXPECT_CONTAINS(error_of([&] { fd::read_hierarchy_csv(file, kClasses); }), "h.csv:2");
  write_text(file, "sparrow_a,Passer\nsparrow_b,Passer\nfinch_a,Fringilla\n");
  EXPECT_CONTAINS(error_of([&] { fd::read_hierarchy_csv(file, kClasses); }),
                  "class 'gull_a' has no parent");
  write_text(file, "sparrow_a,B\nB,C\nC,B\nsparrow_b,B\nfinch_a,B\ngull_a,B\n");
  EXPECT_CONTAINS(error_of([&] { fd::read_hierarchy_csv(file, kClasses); }), "form a cycle");
  write_text(file, "sparrow_a,B\nsparrow_a,C\n");
  EXPECT_CONTAINS(error_of([&] { fd::read_hierarchy_csv(file, kClasses); }),
                  "'sparrow_a' has two parents");
}

TEST(Hierarchy, AircraftVariantFamilyManufacturerFromTheLabelFiles) {
  finch::test::TempDir dir("finch-hierarchy-aircraft");
  const auto root = dir.path();
  write_text(root / "variants.txt", "707-320\n737-700\nA300B4\n");
  for (const std::string split : {"trainval", "test"}) {
    write_text(root / ("images_variant_" + split + ".txt"), "1 707-320\n2 737-700\n3 A300B4\n");
    write_text(root / ("images_family_" + split + ".txt"), "1 Boeing 707\n2 Boeing 737\n3 A300\n");
    write_text(root / ("images_manufacturer_" + split + ".txt"), "1 Boeing\n2 Boeing\n3 Airbus\n");
  }
  finch::Config config = finch::Config::defaults();
  config.set("data.format", "aircraft");
  config.set("data.root", root.string());
  const auto h = fd::dataset_hierarchy(config, {"707-320", "737-700", "A300B4"});
  ASSERT_TRUE(h.has_value());
  EXPECT_EQ(h->class_level, "variant");
  EXPECT_EQ(h->levels, (std::vector<std::string>{"family", "manufacturer"}));
  EXPECT_EQ(h->ancestors[1], (std::vector<std::string>{"Boeing 737", "Boeing"}));
  EXPECT_EQ(h->ancestors[2], (std::vector<std::string>{"A300", "Airbus"}));
  // At data.level family the classes are families.
  config.set("data.level", "family");
  EXPECT_EQ(fd::dataset_hierarchy(config, {"Boeing 707", "A300"})->levels,
            (std::vector<std::string>{"manufacturer"}));
  EXPECT_EQ(fd::dataset_hierarchy(config, {"Boeing 707", "A300"})->class_level, "family");
  // A variant in two families is a data error.
  write_text(root / "images_family_test.txt", "1 Boeing 707\n2 Boeing 707\n3 A300\n");
  config.set("data.level", "variant");
  EXPECT_CONTAINS(error_of([&] {
                    fd::dataset_hierarchy(config, {"707-320", "737-700", "A300B4"});
                  }),
                  "variant '737-700' is in family 'Boeing 737' and 'Boeing 707'");
  config.set("data.format", "imagefolder");
  EXPECT_FALSE(fd::dataset_hierarchy(config, {"a"}).has_value());
}
