"""scDiffusion's declarations: every parameter with its default (the released code's) and what it
means, the allowed values (choices, bounds), the run profiles (quick, standard, paper), the resources
of one task and the `bench tune` grid. The class (bench.generators.scdiffusion.plugin) takes them as
its metadata; docs/models/scdiffusion.md gives the place in the released code for each default."""

from __future__ import annotations

from typing import Any

from bench.api import INTEGER_1, INTEGER_2
from bench.generators.scdiffusion.diffusion import GUIDE_WINDOW, SCHEDULES
from bench.generators.scdiffusion.train import BN_MODES

PARAMETERS: dict[str, Any] = {
    # input: log1p of counts normalised to target_sum per cell (cell_datasets_loader.py: load_data)
    "target_sum": 1e4,
    # stage 1, the autoencoder (VAE/VAE_model.py, VAE/VAE_train.py)
    "latent_dim": 128,
    "ae_hidden": [1024, 1024, 1024],
    "ae_dropout": 0.0,
    "ae_input_dropout": 0.0,
    "ae_steps": 150_000,  # the checkpoint train.sh and the README's cell_train example load
    "ae_lr": 5e-4,
    "ae_weight_decay": 0.01,
    "ae_batch_size": 128,
    # stage 2, the latent diffusion (guided_diffusion/script_util.py, cell_train.py, train_util.py)
    "diffusion_steps": 1000,  # T
    "noise_schedule": "linear",
    "denoiser_hidden": [512, 512, 256, 128],
    "diffusion_train_steps": 500_000,  # cell_train.py: lr_anneal_steps, which is also where it stops
    "diffusion_lr": 1e-4,
    "diffusion_weight_decay": 1e-4,
    "diffusion_batch_size": 128,
    "diffusion_lr_anneal_steps": None,  # None: the learning rate reaches 0 at diffusion_train_steps
    # stage 3, the noisy-latent classifier (classifier_train.py)
    "classifier_hidden": [512, 512, 256, 128],
    "classifier_dropout": 0.1,
    "classifier_steps": 500_000,
    "classifier_lr": 3e-4,
    "classifier_weight_decay": 0.0,
    "classifier_batch_size": 128,
    "classifier_max_t": 500,  # start_guide_time: the classifier sees t < 500 only
    # generation (cell_sample.py, classifier_sample.py)
    "sampling_steps": 1000,  # timestep_respacing '' = every step; fewer: evenly respaced chain
    "classifier_scale": 2.0,
    "start_guide_steps": 500,  # guidance only at timesteps below this
    "guide_window": "spaced",  # see diffusion.GUIDE_WINDOW
    "clip_guided": True,  # classifier_sample.py: clip_denoised=True
    "clip_unguided": False,  # cell_sample.py: clip_denoised=False
    "sample_batch": 3000,  # cells per reverse-diffusion pass (the released sampling batch_size)
    "bn_mode": "batch",  # see train.BN_MODES
    # 'batch' decoding of a request that does not cover every cell type: decode with the latents of
    # every balance_every-th training cell (dropped afterwards), as the released evaluation notebook
    # does to 'balance the batchnorm'; 0 = never
    "balance_every": 5,
    "decode_chunk": 50_000,  # cells decoded per pass
    # training budget: None = the stages' own step counts; "N steps" / "N epochs" scale the three
    # stages together (each keeps its share); "N minutes" gives each stage its share of the time
    "budget": None,
}
CHOICES = {"noise_schedule": SCHEDULES, "guide_window": GUIDE_WINDOW, "bn_mode": BN_MODES}
BOUNDS = {
    "target_sum": "(0, inf)",
    "latent_dim": INTEGER_1,
    "ae_hidden": INTEGER_1,
    "ae_dropout": "[0, 1)",
    "ae_input_dropout": "[0, 1)",
    "ae_steps": INTEGER_1,
    "ae_lr": "(0, inf)",
    "ae_weight_decay": "[0, inf)",
    "ae_batch_size": INTEGER_2,
    "diffusion_steps": INTEGER_2,
    "denoiser_hidden": INTEGER_1,
    "diffusion_train_steps": INTEGER_1,
    "diffusion_lr": "(0, inf)",
    "diffusion_weight_decay": "[0, inf)",
    "diffusion_batch_size": INTEGER_1,
    "diffusion_lr_anneal_steps": INTEGER_1,
    "classifier_hidden": INTEGER_1,
    "classifier_dropout": "[0, 1)",
    "classifier_steps": INTEGER_1,
    "classifier_lr": "(0, inf)",
    "classifier_weight_decay": "[0, inf)",
    "classifier_batch_size": INTEGER_2,
    "classifier_max_t": INTEGER_1,
    "sampling_steps": INTEGER_1,
    "classifier_scale": "[0, inf)",
    "start_guide_steps": "[0, inf) integer",
    "sample_batch": INTEGER_1,
    "balance_every": "[0, inf) integer",
    "decode_chunk": INTEGER_2,
}
PROFILES: dict[str, dict[str, Any]] = {
    # a smoke test of the released networks: pbmc3k (2,429 x 2,000) fits in about 35 s of an idle
    # CPU thread, all three stages (docs/models/scdiffusion.md, speed); short stages at raised
    # learning rates, 50 respaced sampling steps (the guidance then acts at all of them:
    # guide_window 'spaced'), and the unguided sampler's x_0 clipped to [-1, 1] as the guided one
    # is (at this length unclipped chains can leave the sphere and decode to log1p values above 30)
    "quick": {
        "ae_steps": 120,
        "ae_lr": 2e-3,
        "diffusion_train_steps": 300,
        "diffusion_lr": 1e-3,
        "classifier_steps": 150,
        "classifier_lr": 1e-3,
        "sampling_steps": 50,
        "clip_unguided": True,
    },
    # about six minutes of one CPU thread on pbmc3k (the effort docs/tuning.md gives every model), split
    # as the released recipe weighs its stages (diffusion > classifier ~ autoencoder): 42 epochs of the
    # autoencoder, 222 of the diffusion, 78 of the classifier (18 steps each), 100 respaced sampling
    # steps, x_0 clipped as in quick; the learning rates from `bench tune --model scdiffusion`
    # (results/tuning/scdiffusion-pbmc3k.md and the widened points beside it, docs/tuning.md#scdiffusion):
    # diffusion 2e-3, autoencoder 1e-3, validation MMD 0.221
    "standard": {
        "ae_steps": 800,
        "ae_lr": 1e-3,
        "diffusion_train_steps": 4000,
        "diffusion_lr": 2e-3,
        "classifier_steps": 1400,
        "classifier_lr": 1e-3,
        "sampling_steps": 100,
        "clip_unguided": True,
    },
    # the published runs (README.md of the released code: autoencoder checkpoint at 150,000 steps,
    # backbone trained 6e5 steps of train.sh's 8e5-step learning-rate anneal, classifier 2e5 steps);
    # every other number is the released default
    "paper": {
        "ae_steps": 150_000,
        "diffusion_train_steps": 600_000,
        "diffusion_lr_anneal_steps": 800_000,
        "classifier_steps": 200_000,
    },
}
RESOURCES = {"cpus": 8, "gpus": 1, "mem_gb": 32, "time_min": 720}
# `bench tune` (docs/tuning.md#scdiffusion): the diffusion's x the autoencoder's learning rate, every
# point the standard schedule's shape at 120 epochs of the three stages (about its 6,200 steps on the
# sweep's training cells); the best point lay on the grid's edge, so it was widened point by point
# (diffusion 2e-3 and 4e-3, autoencoder 5e-4: results/tuning/scdiffusion-wide-*)
TUNING = {"diffusion_lr": [2e-4, 4e-4, 1e-3], "ae_lr": [1e-3, 2e-3]}
TUNING_BUDGET = "120 epochs"
