"""The special tokens, defined once: the corpus separates documents with EOS, the tokenizer reserves all three.

``<pad>`` is id 0, ``<s>`` (BOS) id 1, ``</s>`` (EOS, also the end-of-text marker between documents) id 2.
"""

PAD, BOS, EOS = "<pad>", "<s>", "</s>"
SPECIAL_TOKENS = (PAD, BOS, EOS)  # in id order
EOT = EOS  # end of text: the separator between documents in a prepared corpus
