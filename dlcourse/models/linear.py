"""Single-layer models: `linear` (logistic regression / softmax regression / linear regression,
by the task's loss) and Rosenblatt's `perceptron` (a threshold unit, trained by the perceptron rule)."""
from __future__ import annotations

import math

import torch
from torch import nn


class Linear(nn.Sequential):
    """Flatten, then one affine map to the outputs: no hidden layer."""

    def __init__(self, in_features: int, num_outputs: int):
        super().__init__(nn.Flatten(), nn.Linear(in_features, num_outputs))
        self.activation = "identity"


class Perceptron(Linear):
    """A formal neuron: output H(w·x + b), the Heaviside step of its net input. `forward` returns the
    net input (the logit the binary task thresholds at 0, the same decision as H); `fire` gives H.
    Trained with loss=perceptron (dlcourse/losses.py), plain SGD makes Rosenblatt's update
    w <- w + η (d - y) x."""

    def fire(self, x: torch.Tensor) -> torch.Tensor:
        return (self(x) > 0).to(x.dtype)


def linear(input_shape, num_classes: int) -> Linear:
    return Linear(math.prod(input_shape), num_classes)


def perceptron(input_shape, num_classes: int) -> Perceptron:
    return Perceptron(math.prod(input_shape), num_classes)
