"""Text for text-to-image: a frozen pretrained sentence encoder and captions for MNIST.

  encoder   all-MiniLM-L6-v2 (sentence-transformers) ported to Flax: WordPiece tokens from the
            model's own tokenizer.json, a 6-layer BERT, mean pooling; weights from safetensors
  captions  seeded, varied captions of MNIST digits from their labels and measured attributes
            (stroke thickness, slant, size), with held-out templates for evaluation
"""
