"""Losses shared by training, tuning and evaluation (registered so `.keras` files reload)."""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="ecg")
class DenoiseLoss(keras.losses.Loss):
    """``MSE + mae_weight * MAE`` over every sample and lead (default weight 0.3)."""

    def __init__(self, mae_weight: float = 0.3, name: str = "denoise_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        if mae_weight < 0:
            raise ValueError(f"`mae_weight` must be >= 0. Received: mae_weight={mae_weight}")
        self.mae_weight = float(mae_weight)

    def call(self, y_true, y_pred):
        err = y_pred - keras.ops.cast(y_true, y_pred.dtype)
        return keras.ops.mean(keras.ops.square(err), axis=(-2, -1)) + self.mae_weight * keras.ops.mean(
            keras.ops.abs(err), axis=(-2, -1)
        )

    def get_config(self):
        return {**super().get_config(), "mae_weight": self.mae_weight}


@keras.saving.register_keras_serializable(package="ecg")
class SNRLoss(keras.losses.Loss):
    """Minus each window's output SNR in dB, capped at ``max_snr_db``.

    ``loss = 10 log10((sum(err^2) + 10^(-max_snr_db/10) sum(y^2)) / sum(y^2))`` over the
    window's samples and leads, so the mean over windows is minus the mean output SNR: the
    SNR-improvement metric itself (the input SNR is fixed by the data). Every window then
    counts by its *relative* error, whatever its input noise level, instead of the noisiest
    windows dominating a squared-error loss. The cap keeps clean windows (zero error under
    the identity) from giving unbounded gradients.
    """

    def __init__(self, max_snr_db: float = 40.0, name: str = "snr_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        if not max_snr_db > 0:
            raise ValueError(f"`max_snr_db` must be > 0. Received: max_snr_db={max_snr_db}")
        self.max_snr_db = float(max_snr_db)

    def call(self, y_true, y_pred):
        y = keras.ops.cast(y_true, y_pred.dtype)
        err = keras.ops.sum(keras.ops.square(y_pred - y), axis=(-2, -1))
        power = keras.ops.sum(keras.ops.square(y), axis=(-2, -1)) + 1e-12
        floor = 10.0 ** (-self.max_snr_db / 10.0)
        return 10.0 * keras.ops.log((err + floor * power) / power) / keras.ops.log(10.0)

    def get_config(self):
        return {**super().get_config(), "max_snr_db": self.max_snr_db}


@keras.saving.register_keras_serializable(package="ecg")
class SpectralLoss(keras.losses.Loss):
    """Multi-resolution STFT magnitude loss of a denoised window against the clean one.

    For each frame length ``n`` in ``frame_lengths`` (samples; hop ``n // 4``, Hann window),
    with ``S`` the clean and ``Ŝ`` the denoised STFT magnitude of every lead:

    ``spectral convergence ||S - Ŝ||_F / ||S||_F + log_weight * mean |log(S + eps) - log(Ŝ + eps)|``,

    averaged over the resolutions (Yamamoto et al. 2020, Parallel WaveGAN). It is 0 for
    identical windows; for a denoised window ``a * clean`` the convergence term is exactly
    ``|1 - a|`` and the log term at most ``|log a|`` (bins far below ``eps`` count as equal). Added to the time-domain loss with ``train.spectral_loss_weight``, it penalizes
    what a sample-wise loss lets through: smeared QRS edges and residual high-frequency noise.
    """

    def __init__(self, frame_lengths: tuple[int, ...] = (32, 64, 128), eps: float = 1e-5,
                 log_weight: float = 1.0, name: str = "spectral_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        frame_lengths = tuple(int(n) for n in frame_lengths)
        if not frame_lengths or any(n < 4 for n in frame_lengths):
            raise ValueError("`frame_lengths` must be a non-empty list of integers >= 4. "
                             f"Received: frame_lengths={frame_lengths}")
        if not eps > 0:
            raise ValueError(f"`eps` must be > 0. Received: eps={eps}")
        if not log_weight >= 0:
            raise ValueError(f"`log_weight` must be >= 0. Received: log_weight={log_weight}")
        self.frame_lengths = frame_lengths
        self.eps = float(eps)
        self.log_weight = float(log_weight)

    def _magnitude(self, x, n: int):
        real, imag = keras.ops.stft(x, sequence_length=n, sequence_stride=max(1, n // 4),
                                    fft_length=n, window="hann", center=True)
        return keras.ops.sqrt(keras.ops.square(real) + keras.ops.square(imag) + 1e-12)

    def call(self, y_true, y_pred):
        y = keras.ops.cast(y_true, y_pred.dtype)
        # (batch, samples, leads) -> (batch, leads, samples): one STFT per lead
        y = keras.ops.transpose(y, (0, 2, 1))
        p = keras.ops.transpose(y_pred, (0, 2, 1))
        total = 0.0
        for n in self.frame_lengths:
            s, s_hat = self._magnitude(y, n), self._magnitude(p, n)
            axes = (-3, -2, -1)
            conv = keras.ops.sqrt(keras.ops.sum(keras.ops.square(s - s_hat), axis=axes)) / (
                keras.ops.sqrt(keras.ops.sum(keras.ops.square(s), axis=axes)) + 1e-12)
            log_mag = keras.ops.mean(keras.ops.abs(
                keras.ops.log(s + self.eps) - keras.ops.log(s_hat + self.eps)), axis=axes)
            total = total + conv + self.log_weight * log_mag
        return total / len(self.frame_lengths)

    def get_config(self):
        return {**super().get_config(), "frame_lengths": list(self.frame_lengths),
                "eps": self.eps, "log_weight": self.log_weight}


@keras.saving.register_keras_serializable(package="ecg")
class WithSpectralTerm(keras.losses.Loss):
    """``time_loss + spectral_weight * SpectralLoss`` (the time-domain loss is any of the
    denoising losses above)."""

    def __init__(self, time_loss, spectral_weight: float = 0.1, spectral=None,
                 name: str = "time_spectral_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        if not spectral_weight >= 0:
            raise ValueError("`spectral_weight` must be >= 0. "
                             f"Received: spectral_weight={spectral_weight}")
        self.time_loss = (keras.losses.deserialize(time_loss) if isinstance(time_loss, dict)
                          else time_loss)
        self.spectral = (keras.losses.deserialize(spectral) if isinstance(spectral, dict)
                         else spectral or SpectralLoss())
        self.spectral_weight = float(spectral_weight)

    def call(self, y_true, y_pred):
        return (self.time_loss.call(y_true, y_pred)
                + self.spectral_weight * self.spectral.call(y_true, y_pred))

    def get_config(self):
        return {**super().get_config(), "spectral_weight": self.spectral_weight,
                "time_loss": keras.losses.serialize(self.time_loss),
                "spectral": keras.losses.serialize(self.spectral)}


def classification_loss(multilabel: bool, focal: bool, gamma: float = 2.0) -> keras.losses.Loss:
    if multilabel:
        return (keras.losses.BinaryFocalCrossentropy(gamma=gamma) if focal
                else keras.losses.BinaryCrossentropy())
    return (keras.losses.CategoricalFocalCrossentropy(gamma=gamma) if focal
            else keras.losses.CategoricalCrossentropy())
