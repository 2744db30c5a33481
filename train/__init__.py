"""rtsr's training code: data collection, the SRResNet and SRGAN stages, evaluation."""
