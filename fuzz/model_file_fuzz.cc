// Copyright 2026 The mcdrop Authors.
//
// libFuzzer target: the model-file loader. Any bytes must give a model or an
// error, never a crash, a leak or undefined behaviour; a model that loads
// must write back to bytes that load to the same model.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "core/model.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto model = mcdrop::Model::FromBytes(
      std::string(reinterpret_cast<const char*>(data), size));
  if (!model.ok()) return 0;
  auto bytes = model->ToBytes();
  if (!bytes.ok()) std::abort();
  auto again = mcdrop::Model::FromBytes(*bytes);
  if (!again.ok() || again->widths() != model->widths() ||
      again->task() != model->task() ||
      again->activation() != model->activation()) {
    std::abort();
  }
  // Every format (v1 stacks, v2 layer lists) writes back to the same bytes.
  auto bytes_again = again->ToBytes();
  if (!bytes_again.ok() || *bytes_again != *bytes) std::abort();
  for (size_t i = 0; i < model->layers().size(); ++i) {
    const auto& w = model->layers()[i].weight;
    const auto& w2 = again->layers()[i].weight;
    const auto& b = model->layers()[i].bias;
    const auto& b2 = again->layers()[i].bias;
    if (w.size() != w2.size() || b.size() != b2.size() ||
        std::memcmp(w.data(), w2.data(), w.size() * sizeof(float)) != 0 ||
        std::memcmp(b.data(), b2.data(), b.size() * sizeof(float)) != 0) {
      std::abort();  // the weights did not survive the round trip
    }
  }
  return 0;
}
