"""``bircnn``: bidirectional recurrent + convolutional network for MIT-BIH beat segments."""

from __future__ import annotations

from keras import layers

from models.checks import CLASSIFIER as check
from models.classifiers import blocks
from models.classifiers.builder import classifier

CONV = blocks.ConvStack(filters=(32, 64), kernel_size=7, pool_size=4)
HEAD = blocks.Head(dense_units=64, dropout=0.3)


def search_space(hp):
    """Builder kwargs sampled from ``hp``; ``HyperParameters()`` gives the builder defaults."""
    space = blocks.conv_space(hp, CONV, bases=(16, 32), kernel_sizes=(5, 7, 9))
    gru_units = hp.Choice("gru_units", [32, 64], default=32)
    head = blocks.head_space(hp, HEAD, dense_choices=(32, 64))
    return {**space, "gru_units": gru_units, **head}


@classifier("bircnn", search_space, head=HEAD, conv=CONV)
def build(ecg, conv, *, gru_units=32):
    """BiRCNN-style fusion of a conv branch and a bidirectional recurrent branch.

    Design (after the bidirectional recurrent CNNs for heartbeat classification, kept light):

    - conv front end: ``[Conv1D -> BN -> ReLU -> MaxPool(pool_size)] x len(filters)``
      (720 samples -> 45 steps with the defaults; 16 samples, 44 ms of ECG per step at 360 Hz);
    - recurrent branch: ``Bidirectional(GRU(gru_units, return_sequences=True))`` over the
      conv features, summarised by global average and global max pooling over time;
    - conv branch: global average pooling of the same conv features;
    - fusion: the three summaries concatenated -> Dense -> Dropout -> output.

    The conv branch carries morphology (QRS shape), the recurrent branch its order in time
    (P-QRS-T sequence, the neighbouring beat). About 46 k parameters on (720, 1).

    Args:
        input_shape: ``(n_samples, n_leads)``, e.g. ``(720, 1)`` (2 s at 360 Hz).
        filters: filters of each conv block.
        kernel_size: conv kernel length in samples.
        pool_size: max-pool size after each conv block (``padding="same"``).
        gru_units: GRU units per direction.
        dense_units: units of the fusion dense layer.
    """
    gru_units = check.positive_int("gru_units", gru_units)
    x = conv(ecg)
    conv_summary = layers.GlobalAveragePooling1D(name="conv_gap")(x)
    r = layers.Bidirectional(
        layers.GRU(gru_units, return_sequences=True, name="gru"), name="bigru"
    )(x)
    rnn_mean = layers.GlobalAveragePooling1D(name="rnn_gap")(r)
    rnn_max = layers.GlobalMaxPooling1D(name="rnn_gmp")(r)
    return layers.Concatenate(name="fusion")([conv_summary, rnn_mean, rnn_max])
