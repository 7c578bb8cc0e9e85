"""Files in and out: streaming readers, atomic writers, record formats and the LLaMA-Factory folder."""
