"""Small CPU training: token streams (:mod:`.data`) and the loop (:mod:`.loop`)."""

from mi_massive.training.data import TokenStream, load_streams
from mi_massive.training.loop import (TrainConfig, TrainLog, TVRCallback, evaluate, lm_loss, lr_at,
                                      select_parameters, train)

__all__ = ["TVRCallback", "TokenStream", "TrainConfig", "TrainLog", "evaluate", "lm_loss", "load_streams", "lr_at",
           "select_parameters", "train"]
