"""Training and evaluation material for the command recognizer (voices, augmentation)."""
