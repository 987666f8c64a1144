"""Export: TFLite/LiteRT artifacts (and their metadata) for edge targets."""
