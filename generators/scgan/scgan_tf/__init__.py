"""The TensorFlow 2 port of scGAN / cscGAN (Marouf et al. 2020) that ``entry.py`` runs in the
image: :mod:`.config` (the defaults, the budget, the learning rate, the class ratios),
:mod:`.runtime` (the device, XLA with its fallback, the user's mistakes, the log), :mod:`.nets`
(layers, networks, optimiser, gradient penalty), :mod:`.model` (the model and its update steps,
save and load, the generation plan) and :mod:`.train` (the training loop). Like ``entry.py`` it
must not import the harness (``bench``): the image does not install it."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported
