"""benchmark-illusion: catch compressed LLMs that pass multiple choice but cannot say the answer."""

__version__ = "0.1.0"
