"""Model code: the value encoder, conditioning, tokenizer and pipeline loading."""
