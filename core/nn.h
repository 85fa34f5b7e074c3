// Copyright 2026 The mcdrop Authors.
//
// Transitional: the training building blocks moved to train/nn.h and the
// activation the engine uses to core/activation.h. core/engine.cc still
// includes this name; once it includes "core/activation.h" instead, delete
// this file. Nothing else may include it.

#ifndef MCDROP_CORE_NN_H_
#define MCDROP_CORE_NN_H_

#include "core/activation.h"

#endif  // MCDROP_CORE_NN_H_
