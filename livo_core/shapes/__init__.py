"""The shapes world: an offline text-to-image world with a measurable bias and toxicity."""
