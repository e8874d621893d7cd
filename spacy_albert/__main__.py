"""``python -m spacy_albert <command>``: see `spacy_albert.cli`."""

from .cli import main

if __name__ == "__main__":
    main()
