#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "fixtures.h"
#include "msam/common/error.h"
#include "msam/io/safetensors.h"

using namespace msam;

TEST(Safetensors, RoundTripAllDtypes) {
  std::map<std::string, at::Tensor> t{
      {"f64", torch::randn({3, 4}, torch::kDouble)},
      {"f32", torch::randn({5}, torch::kFloat)},
      {"f16", torch::randn({2, 2, 2}).to(torch::kHalf)},
      {"bf16", torch::randn({7}).to(torch::kBFloat16)},
      {"i64", torch::arange(10, torch::kLong)},
      {"u8", torch::randint(0, 255, {4, 4}, torch::kByte)},
      {"empty", torch::zeros({0, 3})},
  };
  const std::string path = test::temp_dir("st") + "/x.safetensors";
  io::write_safetensors(path, t, {{"config", "{\"a\": 1}"}});
  auto f = io::read_safetensors(path);
  ASSERT_EQ(f.tensors.size(), t.size());
  for (const auto& [k, v] : t) {
    ASSERT_TRUE(f.contains(k)) << k;
    EXPECT_EQ(f.at(k).scalar_type(), v.scalar_type()) << k;
    EXPECT_TRUE(torch::equal(f.at(k), v)) << k;
  }
  EXPECT_EQ(f.metadata.at("config"), "{\"a\": 1}");
}

TEST(Safetensors, ReadsReferenceFixture) {
  const auto& f = test::parity_fixture("prompt_encoder.safetensors");
  EXPECT_EQ(f.at("input.points").sizes(), (std::vector<int64_t>{2, 3, 3}));
  EXPECT_EQ(f.at("prompt_encoder.pe_layer.positional_encoding_gaussian_matrix").scalar_type(),
            torch::kFloat);
  EXPECT_TRUE(f.metadata.count("config"));
}

namespace {
std::string expect_error(const std::string& bytes) {
  try {
    io::parse_safetensors(bytes, "bad.safetensors");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST(Safetensors, MalformedFilesAreClearErrors) {
  const std::string good = io::serialize_safetensors({{"w", torch::ones({4, 4})}});
  EXPECT_NE(expect_error("abc").find("bad.safetensors"), std::string::npos);
  // Truncated data.
  EXPECT_NE(expect_error(good.substr(0, good.size() - 5)).find("outside"), std::string::npos);
  // Truncated header.
  EXPECT_NE(expect_error(good.substr(0, 20)).find("header length"), std::string::npos);
  // Header that is not JSON.
  std::string junk = good;
  junk[8] = '#';  // the opening brace
  EXPECT_NE(expect_error(junk).find("malformed"), std::string::npos);
  // Size not matching the shape.
  std::string h = R"({"w":{"dtype":"F32","shape":[4,4],"data_offsets":[0,60]}})";
  h.append((8 - h.size() % 8) % 8, ' ');
  std::string bytes(8, '\0');
  bytes[0] = static_cast<char>(h.size());
  bytes += h + std::string(60, '\0');
  EXPECT_NE(expect_error(bytes).find("'w'"), std::string::npos);
  // Unknown dtype.
  std::string h2 = R"({"w":{"dtype":"Q7","shape":[1],"data_offsets":[0,1]}})";
  h2.append((8 - h2.size() % 8) % 8, ' ');
  std::string b2(8, '\0');
  b2[0] = static_cast<char>(h2.size());
  b2 += h2 + std::string(1, '\0');
  EXPECT_NE(expect_error(b2).find("unsupported dtype"), std::string::npos);
  // Missing file.
  EXPECT_THROW(io::read_safetensors("/nonexistent/x.safetensors"), Error);
}

TEST(Safetensors, AtomicWriteLeavesNoTempFile) {
  const std::string dir = test::temp_dir("atomic");
  io::write_safetensors(dir + "/a.safetensors", {{"x", torch::ones({2})}});
  io::write_safetensors(dir + "/a.safetensors", {{"x", torch::zeros({3})}});
  int files = 0;
  for (auto& e : std::filesystem::directory_iterator(dir)) { (void)e; ++files; }
  EXPECT_EQ(files, 1);
  EXPECT_EQ(io::read_safetensors(dir + "/a.safetensors").at("x").numel(), 3);
}

TEST(Safetensors, MetadataAloneIsReadFromTheHeader) {
  const std::string dir = test::temp_dir("st_meta");
  const std::string path = dir + "/m.safetensors";
  io::write_safetensors(path, {{"w", torch::randn({64, 64})}}, {{"config", "a: 1"}, {"msam", "{}"}});
  EXPECT_EQ(io::read_safetensors_metadata(path), io::read_safetensors(path).metadata);
  // The tensors are not read: a file cut inside its data still yields its metadata.
  const std::string bytes = io::read_file(path);
  io::write_file_atomically(dir + "/cut.safetensors", bytes.substr(0, bytes.size() - 100));
  EXPECT_EQ(io::read_safetensors_metadata(dir + "/cut.safetensors").at("config"), "a: 1");
  io::write_safetensors(dir + "/none.safetensors", {{"x", torch::ones({2})}});
  EXPECT_TRUE(io::read_safetensors_metadata(dir + "/none.safetensors").empty());

  const auto error = [](const std::string& file) -> std::string {
    try {
      io::read_safetensors_metadata(file);
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  io::write_file_atomically(dir + "/short.safetensors", bytes.substr(0, 5));
  EXPECT_NE(error(dir + "/short.safetensors").find("shorter than the 8-byte"), std::string::npos);
  io::write_file_atomically(dir + "/header.safetensors", bytes.substr(0, 20));
  EXPECT_NE(error(dir + "/header.safetensors").find("header length"), std::string::npos);
  std::string junk = bytes;
  junk[8] = '#';
  io::write_file_atomically(dir + "/junk.safetensors", junk);
  EXPECT_NE(error(dir + "/junk.safetensors").find("malformed"), std::string::npos);
  EXPECT_NE(error(dir + "/missing.safetensors").find(dir + "/missing.safetensors"), std::string::npos);
}
