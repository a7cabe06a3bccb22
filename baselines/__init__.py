"""Baseline LSTM language models with LightRNN's interface (see `lightrnn.core.lm.LanguageModel`)."""
