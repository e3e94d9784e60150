"""DeepTrust detector: frame sampling, InceptionV3 + LSTM model, training, evaluation, bundles."""
