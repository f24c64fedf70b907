"""A small CNN shared by the training and model-file tests (every stateful layer kind in 7 nodes)."""
from numbacnn.graph import Model
from numbacnn.layers import BatchNorm, Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU

BE = "cpu"


def small(classes=3, seed=0):
    """conv-BN-relu-pool-flatten-dropout-dense on (1, 8, 8) inputs, built on the CPU backend."""
    m = Model.sequential("small", (1, 8, 8), [
        Conv2D(4, 3, padding=1, name="conv"), BatchNorm(name="bn"), ReLU(name="relu"), MaxPool2D(2, name="pool"),
        Flatten(name="flat"), Dropout(0.3, name="drop"), Dense(classes, name="fc")])
    return m.build(BE, seed=seed)
