"""Text helpers several wings share: script/language detection, the texts of a record, text
measures, and the identity rules synthesis, filtering and evaluation all apply."""
