"""Denoiser builders: window ``(samples, leads)`` in, same shape out (linear).

Importing this package registers every builder below with :mod:`models.registry`. What two
or more of them share (recurrent stack, patch Transformer, search-space helpers) is in
:mod:`models.denoisers.common`; argument checks in :mod:`models.checks`.
"""

from models.denoisers import cnn, cnn_dae, lstm, rnn, transformer, unet1d, vq_transformer

__all__ = ["cnn", "cnn_dae", "lstm", "rnn", "transformer", "unet1d", "vq_transformer"]
