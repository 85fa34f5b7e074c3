// Copyright 2026 The mcdrop Authors.

#include "core/safetensors.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <Eigen/Core>
#include <cstring>
#include <nlohmann/json.hpp>

namespace mcdrop {
namespace {

using ::testing::HasSubstr;

std::string Raw(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  const uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  return out + header + data;
}

std::string Floats(std::initializer_list<float> v) {
  return std::string(reinterpret_cast<const char*>(v.begin()), v.size() * 4);
}

TEST(SafetensorsTest, RoundTripsTensorsAndMetadata) {
  auto bytes = SerializeSafetensors({{"a", {2, 3}, {1, 2, 3, 4, 5, 6}},
                                     {"b", {1}, {-7.5f}},
                                     {"empty", {0}, {}}},
                                    {{"k", "v"}});
  ASSERT_TRUE(bytes.ok());
  uint64_t header_len;
  std::memcpy(&header_len, bytes->data(), 8);
  EXPECT_EQ((8 + header_len) % 8, 0u);  // header padded: data 8-byte aligned
  auto st = Safetensors::Parse(*bytes);
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ(st->metadata().at("k"), "v");
  EXPECT_EQ(st->tensors().at("a").shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(*st->ReadAsFloat("a"), (std::vector<float>{1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(*st->ReadAsFloat("b"), (std::vector<float>{-7.5f}));
  EXPECT_TRUE(st->ReadAsFloat("empty")->empty());
  EXPECT_EQ(st->ReadAsFloat("nope").status().code(),
            absl::StatusCode::kNotFound);
}

TEST(SafetensorsTest, ConvertsHalfBfloatAndDouble) {
  const uint16_t half[2] = {0x3C00, 0xC000};  // 1.0, -2.0
  const uint16_t bf16[2] = {0x3FC0, 0x4049};  // 1.5, ~3.140625
  const double f64[2] = {0.25, -1e-3};
  std::string data(reinterpret_cast<const char*>(half), 4);
  data += std::string(reinterpret_cast<const char*>(bf16), 4);
  data += std::string(reinterpret_cast<const char*>(f64), 16);
  const std::string header =
      R"({"h":{"dtype":"F16","shape":[2],"data_offsets":[0,4]},)"
      R"("b":{"dtype":"BF16","shape":[2],"data_offsets":[4,8]},)"
      R"("d":{"dtype":"F64","shape":[2],"data_offsets":[8,24]}})";
  auto st = Safetensors::Parse(Raw(header, data));
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ(*st->ReadAsFloat("h"), (std::vector<float>{1.0f, -2.0f}));
  EXPECT_EQ(*st->ReadAsFloat("b"), (std::vector<float>{1.5f, 3.140625f}));
  EXPECT_EQ(*st->ReadAsFloat("d"), (std::vector<float>{0.25f, -1e-3f}));
}

struct Malformed {
  std::string name;
  std::string bytes;
  std::string message;  // expected substring of the error
};

std::vector<Malformed> MalformedFiles() {
  const std::string ok_entry =
      R"("t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  const std::string data = Floats({1, 2});
  std::string huge(8, '\0');
  const uint64_t big = (1ull << 40);
  std::memcpy(huge.data(), &big, 8);
  std::string past(8, '\0');
  const uint64_t fifty = 50;
  std::memcpy(past.data(), &fifty, 8);
  past += "{}";
  return {
      {"too short", "abc", "shorter than the 8-byte"},
      {"header length over the limit", huge + "{}", "exceeds the limit"},
      {"header length past the end", past, "runs past the end"},
      {"invalid json", Raw("{\"t\": [", data), "not valid JSON"},
      {"json not an object", Raw("[1,2]", data), "not a JSON object"},
      {"entry not an object", Raw(R"({"t": 3})", data),
       "entry is not an object"},
      {"unknown dtype",
       Raw(R"({"t":{"dtype":"I8","shape":[2],"data_offsets":[0,2]}})", data),
       "unsupported dtype \"I8\""},
      {"missing dtype",
       Raw(R"({"t":{"shape":[2],"data_offsets":[0,8]}})", data), "\"dtype\""},
      {"negative dim",
       Raw(R"({"t":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", data),
       "non-negative integers"},
      {"fractional dim",
       Raw(R"({"t":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}})", data),
       "non-negative integers"},
      {"overflowing shape",
       Raw(R"({"t":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})",
           data),
       "too large"},
      {"missing offsets", Raw(R"({"t":{"dtype":"F32","shape":[2]}})", data),
       "data_offsets"},
      {"offsets reversed",
       Raw(R"({"t":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", data),
       "is after end"},
      {"offsets out of bounds",
       Raw(R"({"t":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", data),
       "past the end of the data buffer"},
      {"offsets do not match shape",
       Raw(R"({"t":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", data),
       "needs 12"},
      {"overlapping tensors",
       Raw(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
           R"("u":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
           data),
       "overlap"},
      {"metadata not an object",
       Raw("{" + ok_entry + R"(,"__metadata__":[1]})", data),
       "__metadata__ is not an object"},
      {"metadata value not a string",
       Raw("{" + ok_entry + R"(,"__metadata__":{"tau":3}})", data),
       "\"tau\" is not a string"},
  };
}

TEST(SafetensorsTest, RejectsEachClassOfMalformedFile) {
  for (const Malformed& m : MalformedFiles()) {
    auto st = Safetensors::Parse(m.bytes);
    EXPECT_EQ(st.status().code(), absl::StatusCode::kInvalidArgument) << m.name;
    EXPECT_THAT(st.status().message(), HasSubstr(m.message)) << m.name;
  }
}

// Every truncation and many byte flips of a valid file: never a crash or an
// out-of-bounds read (the CI runs this under AddressSanitizer).
TEST(SafetensorsTest, SurvivesTruncationAndCorruption) {
  auto bytes =
      SerializeSafetensors({{"a", {2, 3}, {1, 2, 3, 4, 5, 6}}}, {{"x", "y"}});
  ASSERT_TRUE(bytes.ok());
  for (size_t n = 0; n < bytes->size(); ++n) {
    auto st = Safetensors::Parse(bytes->substr(0, n));
    if (st.ok()) {
      for (const auto& [name, info] : st->tensors())
        (void)st->ReadAsFloat(name);
    }
  }
  uint32_t state = 1;
  for (int trial = 0; trial < 5000; ++trial) {
    std::string b = *bytes;
    for (int k = 0; k < 3; ++k) {
      state = state * 1664525u + 1013904223u;
      b[(state >> 8) % b.size()] = static_cast<char>(state >> 24);
    }
    auto st = Safetensors::Parse(b);
    if (st.ok()) {
      for (const auto& [name, info] : st->tensors())
        (void)st->ReadAsFloat(name);
    }
  }
}

TEST(SafetensorsTest, MissingFileIsNotFound) {
  auto st = Safetensors::ReadFile("/nonexistent/model.safetensors");
  EXPECT_EQ(st.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(st.status().message(),
              HasSubstr("/nonexistent/model.safetensors"));
}

}  // namespace
}  // namespace mcdrop
