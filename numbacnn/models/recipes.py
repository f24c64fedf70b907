"""Each zoo network's training recipe, from its paper: what ``numbacnn train --model NAME`` uses unless an
option overrides it, and what ``numbacnn models --recipe NAME`` prints.

A recipe fixes the optimizer, learning rate, momentum, weight decay, batch size, schedule and augmentation.
The number of epochs stays the user's (``--epochs``): schedules are given as fractions of the run, so a
recipe "scaled to the epochs given" keeps the paper's shape (He et al. divide the rate by 10 at 50% and
75% of CIFAR training: at epochs 2 and 3 of a 4-epoch run, 50 and 75 of a 100-epoch one).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from ..registry import Registry


@dataclass(frozen=True)
class Recipe:
    """Training settings of one network and where they come from."""

    source: str
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    batch_size: int = 128
    schedule: str = "multistep"
    lr_milestones: tuple = ()     # fractions of the epochs (multistep)
    lr_step: int | None = None    # epochs between step decays (step)
    lr_factor: float = 0.1
    augment: str = ""
    paper_epochs: int | None = None

    def options(self) -> dict:
        """The ``RunConfig`` fields this recipe sets."""
        return {k: v for k, v in asdict(self).items() if k not in ("source", "paper_epochs")}

    def describe(self) -> str:
        opt = (f"SGD lr {self.lr:g}, momentum {self.momentum:g}{' (Nesterov)' if self.nesterov else ''}"
               if self.optimizer == "sgd" else f"Adam lr {self.lr:g}")
        at = ", ".join(f"{m:.0%}" for m in self.lr_milestones)
        sched = {"multistep": f"divided by {1 / self.lr_factor:g} at {at} of the epochs",
                 "step": f"x{self.lr_factor:g} every {self.lr_step} epochs", "cosine": "cosine decay to 0",
                 "constant": "constant"}[self.schedule]
        lines = [f"optimizer      {opt}", f"weight decay   {self.weight_decay:g}", f"batch size     {self.batch_size}",
                 f"schedule       {sched}", f"augmentation   {self.augment or 'none'}"]
        if self.paper_epochs:
            lines.append(f"paper's epochs {self.paper_epochs} (give --epochs; the schedule scales to it)")
        return "\n".join(lines + [f"source         {self.source}"])


RECIPES = Registry("recipe")

_CIFAR_RESNET = Recipe("He et al. 2016, section 4.2: SGD 0.1, momentum 0.9, weight decay 1e-4, batch 128, the rate "
                       "divided by 10 at 32k and 48k of 64k iterations, flips and crops",
                       lr=0.1, weight_decay=1e-4, lr_milestones=(0.5, 0.75), augment="flip,zoom", paper_epochs=164)
_IMAGENET_RESNET = Recipe("He et al. 2016, section 3.4: SGD 0.1, momentum 0.9, weight decay 1e-4, batch 256, the "
                          "rate divided by 10 when the error plateaus (about every 30 of 90 epochs)",
                          lr=0.1, weight_decay=1e-4, batch_size=256, lr_milestones=(1 / 3, 2 / 3),
                          augment="flip,zoom", paper_epochs=90)
_VGG = Recipe("Simonyan & Zisserman 2014, section 3.1: SGD 0.01, momentum 0.9, weight decay 5e-4, batch 256, the "
              "rate divided by 10 three times when validation accuracy stopped improving (here at 50%, 75%, 90%)",
              weight_decay=5e-4, batch_size=256, lr_milestones=(0.5, 0.75, 0.9), augment="flip,zoom",
              paper_epochs=74)
_ALEXNET = Recipe("Krizhevsky et al. 2012, section 5: SGD 0.01, momentum 0.9, weight decay 5e-4, batch 128, the "
                  "rate divided by 10 three times when validation error stopped improving (here at 50%, 75%, 90%)",
                  weight_decay=5e-4, lr_milestones=(0.5, 0.75, 0.9), augment="flip,zoom", paper_epochs=90)
_ZFNET = Recipe("Zeiler & Fergus 2013, section 3: SGD 0.01, momentum 0.9, batch 128, the rate annealed by hand "
                "when validation error plateaued (here divided by 10 at 50% and 75%)",
                lr_milestones=(0.5, 0.75), augment="flip,zoom", paper_epochs=70)
_GOOGLENET = Recipe("Szegedy et al. 2015, section 6: asynchronous SGD with momentum 0.9, the rate decreased by 4% "
                    "every 8 epochs (the base rate is not published: 0.01 here), auxiliary losses weighted 0.3",
                    schedule="step", lr_step=8, lr_factor=0.96, augment="flip,zoom")
_LENET = Recipe("numbacnn's default: Adam 1e-3 with cosine decay, batch 32 (LeCun et al. 1998 trained with "
                "stochastic diagonal Levenberg-Marquardt, which numbacnn does not implement)",
                optimizer="adam", lr=1e-3, momentum=0.9, batch_size=32, schedule="cosine")
_DENSE = Recipe("numbacnn's default for dense networks: Adam 1e-3 with cosine decay, batch 32",
                optimizer="adam", lr=1e-3, batch_size=32, schedule="cosine")
_CIFAR_SGD = Recipe("numbacnn's CIFAR recipe for this 32x32 variant: SGD 0.05, momentum 0.9, weight decay 5e-4, "
                    "batch 128, cosine decay, flips and crops", lr=0.05, weight_decay=5e-4, schedule="cosine",
                    augment="flip,zoom")

for _names, _recipe in ((("resnet20", "resnet32", "resnet44", "resnet56", "resnet110"), _CIFAR_RESNET),
                        (("resnet18", "resnet34", "resnet50", "resnet101", "resnet152"), _IMAGENET_RESNET),
                        (tuple(f"vgg{d}{bn}" for d in (11, 13, 16, 19) for bn in ("", "_bn")), _VGG),
                        (("alexnet",), _ALEXNET), (("zfnet",), _ZFNET), (("googlenet",), _GOOGLENET),
                        (("lenet5",), _LENET), (("alexnet32", "vgg", "inception"), _CIFAR_SGD),
                        (("linear", "mlp"), _DENSE)):
    for _name in _names:
        RECIPES[_name] = _recipe


__all__ = ["Recipe", "RECIPES"]
