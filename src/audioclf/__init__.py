"""audioclf: sound clips in, a trained, evaluated, quantized audio classifier out."""

__version__ = "0.1.0"
