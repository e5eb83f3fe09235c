#include <gtest/gtest.h>
#include <torch/torch.h>
#include <zlib.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <regex>

#include "fixtures.h"
#include "msam/common/error.h"
#include "msam/io/pth_import.h"
#include "msam/io/safetensors.h"
#include "msam/io/zip_archive.h"

using namespace msam;

namespace {

// ---- crafting small torch.save-like archives ----------------------------------------------

std::string le_bytes(uint64_t v, int n) {
  std::string s;
  for (int i = 0; i < n; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  return s;
}

std::string raw_deflate(const std::string& in) {
  z_stream zs{};
  deflateInit2(&zs, Z_BEST_COMPRESSION, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
  std::string out(deflateBound(&zs, in.size()), '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  deflate(&zs, Z_FINISH);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

struct ZipSpec {
  std::string name, bytes;
  bool deflate = false;
};

// A minimal ZIP archive: local headers + data, central directory, end record.
std::string make_zip(const std::vector<ZipSpec>& files) {
  std::string body, dir;
  for (const auto& f : files) {
    const uint32_t crc = crc32(0L, reinterpret_cast<const Bytef*>(f.bytes.data()),
                               static_cast<uInt>(f.bytes.size()));
    const std::string data = f.deflate ? raw_deflate(f.bytes) : f.bytes;
    const std::string common = le_bytes(f.deflate ? 8 : 0, 2) + le_bytes(0, 4) +
                               le_bytes(crc, 4) + le_bytes(data.size(), 4) +
                               le_bytes(f.bytes.size(), 4) + le_bytes(f.name.size(), 2) +
                               le_bytes(0, 2);
    dir += le_bytes(0x02014b50, 4) + le_bytes(20, 2) + le_bytes(20, 2) + le_bytes(0, 2) + common +
           le_bytes(0, 2) + le_bytes(0, 2) + le_bytes(0, 2) + le_bytes(0, 4) +
           le_bytes(body.size(), 4) + f.name;
    body += le_bytes(0x04034b50, 4) + le_bytes(20, 2) + le_bytes(0, 2) + common + f.name + data;
  }
  return body + dir + le_bytes(0x06054b50, 4) + le_bytes(0, 4) + le_bytes(files.size(), 2) +
         le_bytes(files.size(), 2) + le_bytes(dir.size(), 4) + le_bytes(body.size(), 4) +
         le_bytes(0, 2);
}

// Protocol-2 pickle opcodes, as torch.save writes them.
struct Pickle {
  std::string b = "\x80\x02";
  Pickle& op(const std::string& o) { b += o; return *this; }
  Pickle& str(const std::string& s) { b += "X" + le_bytes(s.size(), 4) + s; return *this; }
  Pickle& integer(int32_t i) { b += "J" + le_bytes(static_cast<uint32_t>(i), 4); return *this; }
  Pickle& real(double d) {
    uint64_t bits;
    std::memcpy(&bits, &d, 8);
    b += "G";
    for (int i = 7; i >= 0; --i) b.push_back(static_cast<char>((bits >> (8 * i)) & 0xff));
    return *this;
  }
  Pickle& global(const std::string& module, const std::string& name) {
    b += "c" + module + "\n" + name + "\n";
    return *this;
  }
  Pickle& ints(const std::vector<int>& v) {
    op("(");
    for (int x : v) integer(x);
    return op("t");
  }
  // torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict()).
  Pickle& tensor(const std::string& storage_type, const std::string& key, int numel, int offset,
                 const std::vector<int>& size, const std::vector<int>& stride) {
    global("torch._utils", "_rebuild_tensor_v2").op("((").str("storage");
    global("torch", storage_type).str(key).str("cpu").integer(numel).op("tQ");
    integer(offset).ints(size).ints(stride).op("\x89");
    return global("collections", "OrderedDict").op(")RtR");
  }
};

std::string write_temp(const std::string& name, const std::string& bytes) {
  const std::string path = test::temp_dir("pth") + "/" + name;
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

std::string float_bytes(const std::vector<float>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
}

// {'model_state_dict': OrderedDict(<entries>), 'epoch': 7}
std::string checkpoint_pickle(const std::function<void(Pickle&)>& entries) {
  Pickle p;
  p.op("}(").str("model_state_dict").global("collections", "OrderedDict").op(")R(");
  entries(p);
  p.op("u").str("epoch").integer(7).op("u.");
  return p.b;
}

std::string import_error(const std::string& path) {
  try {
    io::read_pth(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

#define EXPECT_HAS(haystack, needle) \
  EXPECT_NE(std::string(haystack).find(needle), std::string::npos) << (haystack)

// ---- reference fixtures ----------------------------------------------------------------------

bool is_weight(const std::string& key) {
  return key.rfind("input.", 0) != 0 && key.rfind("output.", 0) != 0;
}

// The parity weight a converted (msam-keyed) tensor must equal, or an undefined tensor.
at::Tensor parity_weight(const std::string& msam_key) {
  static const std::regex kLoraBase(R"(^(image_encoder\.blocks\.\d+\.attn\.qkv)\.qkv\.(.*)$)");
  std::smatch m;
  if (std::regex_match(msam_key, m, kLoraBase))
    return test::parity_fixture("image_encoder_small.safetensors").at(m[1].str() + "." + m[2].str());
  for (const char* f : {"image_encoder_small.safetensors", "prompt_encoder.safetensors",
                        "mask_decoder.safetensors", "mea.safetensors", "lora_qkv.safetensors"}) {
    const auto& file = test::parity_fixture(f);
    if (file.contains(msam_key)) return file.at(msam_key);
  }
  return {};
}

void expect_parity_weights(const std::map<std::string, at::Tensor>& tensors) {
  for (const auto& [k, t] : tensors) {
    const at::Tensor ref = parity_weight(k);
    ASSERT_TRUE(ref.defined()) << "no parity weight for " << k;
    EXPECT_EQ(t.sizes(), ref.sizes()) << k;
    EXPECT_TRUE(torch::equal(t.to(ref.scalar_type()), ref)) << k;
  }
}

void expect_has_all_weights(const std::map<std::string, at::Tensor>& tensors,
                            const std::string& fixture) {
  for (const auto& [k, t] : test::parity_fixture(fixture).tensors) {
    if (is_weight(k)) {
      EXPECT_TRUE(tensors.count(k)) << fixture << ": " << k;
    }
  }
}

const io::PthCheckpoint& sam_med3d_checkpoint() {
  static const io::PthCheckpoint c = io::read_pth(test::checkpoint_path("sam_med3d_format.pth"));
  return c;
}
const io::PthCheckpoint& msam_checkpoint() {
  static const io::PthCheckpoint c = io::read_pth(test::checkpoint_path("msam_format.pth"));
  return c;
}

}  // namespace

TEST(PthImport, SamMed3dCheckpointEqualsParityWeights) {
  const auto& c = sam_med3d_checkpoint();
  EXPECT_EQ(c.layout, "sam_med3d");
  const auto tensors = io::to_msam_keys(c.state, c.layout);
  EXPECT_EQ(tensors.size(), c.state.size());
  expect_parity_weights(tensors);
  // Every weight of the three module fixtures is in the checkpoint.
  for (const char* f : {"image_encoder_small.safetensors", "prompt_encoder.safetensors",
                        "mask_decoder.safetensors"})
    expect_has_all_weights(tensors, f);
  EXPECT_EQ(c.info.at("epoch"), 200);
  EXPECT_DOUBLE_EQ(c.info.at("best_dice").get<double>(), 0.6);
  EXPECT_EQ(c.info.at("args").at("model_type"), "vit_b_ori");
  EXPECT_FALSE(c.info.contains("optimizer_state_dict"));  // holds tensors
}

TEST(PthImport, MsamCheckpointEqualsParityWeightsUnderMsamKeys) {
  const auto& c = msam_checkpoint();
  EXPECT_EQ(c.layout, "msam");
  EXPECT_TRUE(c.state.count("lora_sam.sam.image_encoder.blocks.0.attn.qkv.qkv.weight"));
  const auto tensors = io::to_msam_keys(c.state, c.layout);
  EXPECT_EQ(tensors.size(), c.state.size());
  expect_parity_weights(tensors);
  expect_has_all_weights(tensors, "mea.safetensors");
  expect_has_all_weights(tensors, "lora_qkv.safetensors");
  EXPECT_TRUE(tensors.count("image_encoder.blocks.2.attn.qkv.qkv.bias"));
  EXPECT_EQ(c.info.at("epoch"), 37);
  EXPECT_EQ(c.info.at("used_datas"), nlohmann::json::array({"data/train/lesion/ct_demo"}));
  EXPECT_EQ(c.info.at("args").at("gpu_ids"), nlohmann::json::array({0}));
}

TEST(PthImport, ToMsamKeysRejectsForeignKeys) {
  const std::map<std::string, at::Tensor> state{{"lora_sam.w_As.0.weight", torch::zeros({1})}};
  EXPECT_THROW(io::to_msam_keys(state, "msam"), Error);
  EXPECT_THROW(io::to_msam_keys(state, "other"), Error);
}

TEST(PthImport, ConvertRoundTrip) {
  const std::string in = test::checkpoint_path("msam_format.pth");
  const std::string out = test::temp_dir("convert") + "/msam.safetensors";
  const auto summary = io::convert_checkpoint(in, out);
  EXPECT_FALSE(summary.already_safetensors);
  EXPECT_EQ(summary.layout, "msam");
  const auto f = io::read_safetensors(out);
  const auto expected = io::to_msam_keys(msam_checkpoint().state, "msam");
  ASSERT_EQ(f.tensors.size(), expected.size());
  EXPECT_EQ(summary.tensors, expected.size());
  for (const auto& [k, t] : expected) {
    ASSERT_TRUE(f.contains(k)) << k;
    EXPECT_EQ(f.at(k).scalar_type(), t.scalar_type()) << k;
    EXPECT_TRUE(torch::equal(f.at(k), t)) << k;
  }
  EXPECT_EQ(f.metadata.at("source"), in);
  EXPECT_EQ(f.metadata.at("layout"), "msam");
  EXPECT_EQ(f.metadata.at("epoch"), "37");
  EXPECT_EQ(nlohmann::json::parse(f.metadata.at("info")).at("best_loss"), 0.5);

  // Already safetensors: recognised, nothing written.
  const std::string again = test::temp_dir("convert") + "/again.safetensors";
  const auto s2 = io::convert_checkpoint(out, again);
  EXPECT_TRUE(s2.already_safetensors);
  EXPECT_EQ(s2.tensors, expected.size());
  EXPECT_FALSE(std::filesystem::exists(again));
}

TEST(PthImport, ViewsSharedStoragesParametersAndDeflate) {
  // Storage '0': 12 floats shared by a contiguous view, an offset transposed view and a
  // parameter; storage '1': int64 read as a 0-d tensor at offset 1.
  std::vector<float> v(12);
  for (int i = 0; i < 12; ++i) v[i] = static_cast<float>(i) * 0.5f;
  const int64_t longs[2] = {-3, 1234567890123};
  const std::string pkl = checkpoint_pickle([](Pickle& p) {
    p.str("image_encoder.a").tensor("FloatStorage", "0", 12, 0, {2, 3}, {3, 1});
    p.str("image_encoder.b").tensor("FloatStorage", "0", 12, 1, {3, 2}, {1, 3});
    p.str("mask_decoder.p").global("torch._utils", "_rebuild_parameter").op("(");
    p.tensor("FloatStorage", "0", 12, 4, {4}, {2}).op("\x88");
    p.global("collections", "OrderedDict").op(")RtR");
    p.str("prompt_encoder.n").tensor("LongStorage", "1", 2, 1, {}, {});
  });
  const std::string path = write_temp(
      "views.pth", make_zip({{"some_other_name/data.pkl", pkl, true},
                             {"some_other_name/data/0", float_bytes(v), true},
                             {"some_other_name/data/1",
                              std::string(reinterpret_cast<const char*>(longs), 16)},
                             {"some_other_name/version", "3\n"}}));
  const auto c = io::read_pth(path);
  EXPECT_EQ(c.layout, "sam_med3d");
  const auto base = torch::arange(12, torch::kFloat) * 0.5;
  EXPECT_TRUE(torch::equal(c.state.at("image_encoder.a"), base.slice(0, 0, 6).view({2, 3})));
  EXPECT_TRUE(torch::equal(c.state.at("image_encoder.b"), base.as_strided({3, 2}, {1, 3}, 1)));
  EXPECT_TRUE(c.state.at("image_encoder.b").is_contiguous());
  EXPECT_TRUE(torch::equal(c.state.at("mask_decoder.p"), base.slice(0, 4, 12, 2)));
  EXPECT_EQ(c.state.at("prompt_encoder.n").dim(), 0);
  EXPECT_EQ(c.state.at("prompt_encoder.n").item<int64_t>(), 1234567890123);
  EXPECT_EQ(c.info.at("epoch"), 7);
}

TEST(PthImport, PlainStateDictAndNamespaceArgs) {
  Pickle p;
  p.op("}(").str("image_encoder.w").tensor("HalfStorage", "k", 1, 0, {1}, {1}).op("u.");
  const uint16_t one = 0x3c00;  // 1.0 in half precision
  const std::string plain = write_temp(
      "plain.pth", make_zip({{"x/data.pkl", p.b}, {"x/data/k", std::string(reinterpret_cast<const char*>(&one), 2)}}));
  const auto c = io::read_pth(plain);
  EXPECT_EQ(c.state.at("image_encoder.w").scalar_type(), torch::kHalf);
  EXPECT_EQ(c.state.at("image_encoder.w").item<float>(), 1.0f);
  EXPECT_TRUE(c.info.empty());

  // `state_dict` entry; args: the Namespace's simple fields are kept, a skipped object is
  // dropped.
  Pickle q;
  q.op("}(").str("state_dict").op("}(").str("prompt_encoder.w");
  q.tensor("HalfStorage", "k", 1, 0, {}, {}).op("u");
  q.str("args").global("argparse", "Namespace").op(")\x81}(");
  q.str("lr").real(0.5).str("name").str("x").str("counter");
  q.global("collections", "Counter").op("}\x85R").op("ub").op("u.");
  const auto d = io::read_pth(write_temp(
      "args.pth", make_zip({{"y/data.pkl", q.b},
                            {"y/data/k", std::string(reinterpret_cast<const char*>(&one), 2)}})));
  EXPECT_EQ(d.state.at("prompt_encoder.w").item<float>(), 1.0f);
  EXPECT_EQ(d.info.at("args"), nlohmann::json({{"lr", 0.5}, {"name", "x"}}));

  // An empty state dict has no recognisable layout.
  Pickle r;
  r.op("}(").str("model_state_dict").op("}u.");
  EXPECT_HAS(import_error(write_temp("empty.pth", make_zip({{"z/data.pkl", r.b}}))),
             "neither SAM-Med3D keys");
}

TEST(PthImport, DisallowedGlobalWhereTensorIsRequired) {
  // The reduce of os.system is never performed: it becomes a skipped object.
  const std::string pkl = checkpoint_pickle([](Pickle& p) {
    p.str("image_encoder.w").global("os", "system").op("(").str("touch /tmp/pwned").op("tR");
  });
  const std::string path = write_temp("evil.pth", make_zip({{"evil/data.pkl", pkl}}));
  const std::string e = import_error(path);
  EXPECT_HAS(e, path);
  EXPECT_HAS(e, "tensor 'image_encoder.w'");
  EXPECT_HAS(e, "os.system is not in the allow-list");
}

TEST(PthImport, MalformedArchivesAreClearErrors) {
  const std::vector<float> v(6, 1.0f);
  const std::string pkl = checkpoint_pickle([](Pickle& p) {
    p.str("image_encoder.w").tensor("FloatStorage", "0", 6, 0, {6}, {1});
  });
  const std::string good = make_zip({{"ck/data.pkl", pkl}, {"ck/data/0", float_bytes(v)}});
  ASSERT_NO_THROW(io::read_pth(write_temp("good.pth", good)));

  // Truncated archive: the end record is gone.
  std::string path = write_temp("truncated.pth", good.substr(0, good.size() - 30));
  EXPECT_HAS(import_error(path), path + ": not a ZIP archive");
  // Central directory pointing past the end of the file.
  std::string cut = good.substr(0, 40) + good.substr(good.size() - 22);
  path = write_temp("cut.pth", cut);
  EXPECT_HAS(import_error(path), "truncated ZIP archive");
  // A flipped byte in the pickle fails the CRC check.
  std::string flipped = good;
  flipped[60] ^= 0x01;
  path = write_temp("crc.pth", flipped);
  EXPECT_HAS(import_error(path), "CRC mismatch in entry 'ck/data.pkl'");
  // No data.pkl.
  path = write_temp("nopkl.pth", make_zip({{"ck/data/0", float_bytes(v)}}));
  EXPECT_HAS(import_error(path), "no <folder>/data.pkl");
  // Missing storage entry.
  path = write_temp("nostorage.pth", make_zip({{"ck/data.pkl", pkl}}));
  EXPECT_HAS(import_error(path), "storage entry 'ck/data/0' is missing");
  // Storage too small for its declared element count.
  path = write_temp("short.pth", make_zip({{"ck/data.pkl", pkl}, {"ck/data/0", "abcd"}}));
  EXPECT_HAS(import_error(path), "holds 4 bytes, but 6 elements of Float need 24");
  // A view reaching past its storage.
  const std::string far = checkpoint_pickle([](Pickle& p) {
    p.str("image_encoder.w").tensor("FloatStorage", "0", 6, 2, {3}, {2});
  });
  path = write_temp("far.pth", make_zip({{"ck/data.pkl", far}, {"ck/data/0", float_bytes(v)}}));
  EXPECT_HAS(import_error(path), "reaches element 6 of a 6-element storage");
  // Truncated pickle.
  path = write_temp("shortpkl.pth", make_zip({{"ck/data.pkl", pkl.substr(0, pkl.size() / 2)},
                                             {"ck/data/0", float_bytes(v)}}));
  EXPECT_HAS(import_error(path), "truncated pickle");
  // Every truncation point of the pickle is an error, never a crash.
  for (size_t n = 0; n < pkl.size(); ++n) {
    path = write_temp("cut.pth", make_zip({{"ck/data.pkl", pkl.substr(0, n)},
                                           {"ck/data/0", float_bytes(v)}}));
    EXPECT_THROW(io::read_pth(path), Error) << n;
  }
  // A storage type outside the allow-list.
  const std::string complex = checkpoint_pickle([](Pickle& p) {
    p.str("image_encoder.w").tensor("ComplexFloatStorage", "0", 3, 0, {3}, {1});
  });
  path = write_temp("complex.pth",
                    make_zip({{"ck/data.pkl", complex}, {"ck/data/0", float_bytes(v)}}));
  EXPECT_HAS(import_error(path), "storage of unsupported type torch.ComplexFloatStorage");
  // An entry claiming more data than the file holds.
  std::string big = good;
  const size_t dir_pos = good.rfind(std::string("\x50\x4b\x01\x02", 4));  // last central header
  big[dir_pos + 23] = '\x7f';  // high byte of its compressed size: ~2 GB
  path = write_temp("big.pth", big);
  EXPECT_HAS(import_error(path), "'ck/data/0' lies past the end");
  // Not a zip file at all.
  path = write_temp("text.pth", "this is not a checkpoint");
  EXPECT_HAS(import_error(path), path + ": not a ZIP archive");
  EXPECT_HAS(import_error(test::temp_dir("pth") + "/absent.pth"), "cannot open");
}

TEST(ZipArchive, ListsAndReadsEntries) {
  const std::string text(5000, 'z');
  const std::string path =
      write_temp("a.zip", make_zip({{"a/x.txt", "hello"}, {"a/y.txt", text, true}}));
  io::ZipArchive zip(path);
  ASSERT_EQ(zip.entries().size(), 2u);
  EXPECT_EQ(zip.entries()[1].method, 8);
  EXPECT_LT(zip.entries()[1].compressed_size, zip.entries()[1].size);
  EXPECT_EQ(zip.read("a/x.txt"), "hello");
  EXPECT_EQ(zip.read("a/y.txt"), text);
  EXPECT_EQ(zip.find("a/z.txt"), nullptr);
  EXPECT_THROW(zip.read("a/z.txt"), Error);
}
