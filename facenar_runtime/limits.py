"""The largest value each kind of number may take, and why.

Every numeric option and every number read from a config or architecture JSON is checked against
one of these (facenar_runtime.cli `number(...)` refuses to build a parser without an upper bound): a
value past them is a typo or an attack (`--seed 2**64`, `"input_size": 10**12`), and without the
bound it ends in a traceback from numpy or torch, or in allocating until the machine gives out.
Each bound sits far above any real use so that no genuine run meets it.
"""
from __future__ import annotations

import math

SEED = 2**31 - 1            # numpy takes seeds below 2^32, and runs derive more (seed + 1 + rank, seed + 3) from it
WORKERS = 1024              # processes: more than any machine has cores
BATCH = 65_536              # images per batch: 65,536 x 3 x 112 x 112 float32 inputs alone take 9.9 GB
INPUT_SIDE = 4096           # pixels: 112 for faces, 224 for ImageNet; a 4096^2 feature map of 64 channels is 4 GB
WIDTH = 16.0                # channel multiplier: iresnet50 at 16x has 11 G parameters (44 GB of float32)
EMBEDDING = 65_536          # embedding length: 128x the paper's 512
CHANNELS = 4096             # ENAS macro-space channels: 8x ResNet-18's last stage (512); ENAS uses 36
LAYERS = 1000               # ENAS macro-space layers: 83x ENAS's 12
EPOCHS = 100_000            # the paper's search runs 150 epochs and its training 35
STEPS = 10**9               # steps or intervals: MS1M trained 35 epochs at batch 128 takes 1.6 M steps
SAMPLES = 1_000_000         # sampled architectures or controller steps: ENAS uses 20 x 50 per epoch
IMAGES = 1 << 24            # images per identity: RecordIO keys are float32 labels, whole up to 2^24
IDENTITIES = 1 << 24        # identities / classes: labels are float32, whole up to 2^24 (MS1M has 85,742)
PAIRS = 10_000_000          # verification pairs: 1,000x LFW's 6,000 (pairs of 112x112 JPEGs)
PIXELS = 1_000_000          # a landmark coordinate: no photo is a million pixels wide
REPEATS = 100_000           # timing repeats of one op or network
LEARNING_RATE = 10.0        # SGD / Adam step size: 100x the paper's 0.1; beyond it every network here diverges
WEIGHT_DECAY = 1.0          # a decay of 1 would erase the weights at every step
MARGIN_ANGLE = math.pi      # additive angular margin (radians): theta + m beyond pi wraps around the circle
MARGIN_COSINE = 2.0         # additive cosine margin: cosines lie in [-1, 1], so 2 already moves every logit past every other
MARGIN_MULTIPLIER = 10.0    # multiplicative angular margin: SphereFace uses 4
LOGIT_SCALE = 1024.0        # ArcFace's s: 16x the paper's 64; larger turns the softmax into an argmax (zero gradient)
CLIP_NORM = 1e6             # gradient-clip norm: a larger one never clips (0 turns clipping off)
CONTROLLER_WEIGHT = 100.0   # entropy / skip penalties against a reward in [0, 1]: beyond 100 the reward no longer counts
LOGIT_RANGE = 100.0         # controller tanh constant and temperature: softmax is one-hot long before 100
MACS = 1e15                 # multiply-adds: over 10,000x iresnet100 at 224 pixels
MILLISECONDS = 1e6          # latency target: 1,000 s per image
COST_EXPONENT = 100.0       # |cost weight| (MnasNet's is 0.07): at 100 a 1% miss already scales the reward by 0.37
MINUTES = 1440.0            # a benchmark's time budget: one day
SCHEDULE = 1000.0           # SGDR cycle growth T_mult: at 1000 the third cycle already ends past EPOCHS
