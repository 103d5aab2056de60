//! The character vocabulary, stored as a Hugging Face `tokenizer.json` (a WordLevel model over single
//! characters) so Python's `tokenizers` loads it too.
//!
//! Encoding a 21 M-character corpus through the generic pipeline (regex split, per-piece offsets)
//! costs seconds; since every token is exactly one character we encode through a lookup table built
//! from the same vocabulary, and a test checks that both paths agree.

use anyhow::{anyhow, bail, Context, Result};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::models::wordlevel::WordLevel;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

pub const EOR: &str = "<eor>";
pub const UNK: &str = "<unk>";
pub const EOR_ID: u32 = 0;
pub const UNK_ID: u32 = 1;

pub struct CharTokenizer {
    inner: Tokenizer,
    /// id → character (`None` for the special tokens).
    chars: Vec<Option<char>>,
    /// character → id for the whole Basic Multilingual Plane; a map for the rest.
    bmp: Vec<u32>,
    astral: HashMap<char, u32>,
}

impl CharTokenizer {
    /// Every character seen at least `min_count` times in `texts`, after `<eor>` (0) and `<unk>` (1).
    pub fn build<'a>(texts: impl IntoIterator<Item = &'a str>, min_count: usize) -> Result<Self> {
        let mut counts: BTreeMap<char, usize> = BTreeMap::new();
        for t in texts {
            for c in t.chars() {
                *counts.entry(c).or_default() += 1;
            }
        }
        let mut vocab: Vec<String> = vec![EOR.into(), UNK.into()];
        vocab.extend(counts.into_iter().filter(|&(_, n)| n >= min_count.max(1)).map(|(c, _)| c.to_string()));
        if vocab.len() == 2 {
            bail!("no character occurs {min_count} times in the training text; lower --min-char-count or add data");
        }
        Self::from_vocab(&vocab)
    }

    fn from_vocab(vocab: &[String]) -> Result<Self> {
        let map: HashMap<String, u32> = vocab.iter().enumerate().map(|(i, s)| (s.clone(), i as u32)).collect();
        let model = WordLevel::builder()
            .vocab(map.into_iter().collect())
            .unk_token(UNK.into())
            .build()
            .map_err(|e| anyhow!("building the character vocabulary: {e}"))?;
        let mut inner = Tokenizer::new(model);
        let split = Split::new(SplitPattern::Regex("(?s).".into()), SplitDelimiterBehavior::Isolated, false)
            .map_err(|e| anyhow!("building the character splitter: {e}"))?;
        inner.with_pre_tokenizer(Some(split));
        inner.with_decoder(Some(Fuse::new()));
        inner
            .add_special_tokens([AddedToken::from(EOR, true), AddedToken::from(UNK, true)])
            .map_err(|e| anyhow!("registering special tokens: {e}"))?;
        Self::from_tokenizer(inner)
    }

    fn from_tokenizer(inner: Tokenizer) -> Result<Self> {
        let vocab = inner.get_vocab(true);
        let n = vocab.len();
        if vocab.get(EOR) != Some(&EOR_ID) || vocab.get(UNK) != Some(&UNK_ID) {
            bail!("not a gen character tokenizer: <eor> must be id 0 and <unk> id 1");
        }
        let mut chars = vec![None; n];
        let mut bmp = vec![UNK_ID; 0x10000];
        let mut astral = HashMap::new();
        for (tok, &id) in &vocab {
            if id as usize >= n {
                bail!("tokenizer ids are not contiguous (id {id} with {n} tokens)");
            }
            if tok == EOR || tok == UNK {
                continue;
            }
            let mut it = tok.chars();
            let (Some(c), None) = (it.next(), it.next()) else {
                bail!("not a character tokenizer: token {tok:?} is longer than one character");
            };
            chars[id as usize] = Some(c);
            if (c as u32) < 0x10000 {
                bmp[c as usize] = id;
            } else {
                astral.insert(c, id);
            }
        }
        Ok(Self { inner, chars, bmp, astral })
    }

    pub fn load(path: &Path) -> Result<Self> {
        if !path.exists() {
            bail!("{}: tokenizer not found; is this a gen checkpoint directory?", path.display());
        }
        let inner = Tokenizer::from_file(path).map_err(|e| anyhow!("{}: cannot load tokenizer: {e}", path.display()))?;
        Self::from_tokenizer(inner).with_context(|| path.display().to_string())
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let json = self.inner.to_string(true).map_err(|e| anyhow!("serializing tokenizer: {e}"))?;
        crate::fsutil::atomic_write(path, json.as_bytes())
    }

    pub fn vocab_size(&self) -> usize {
        self.chars.len()
    }

    pub fn id(&self, c: char) -> u32 {
        if (c as u32) < 0x10000 {
            self.bmp[c as usize]
        } else {
            self.astral.get(&c).copied().unwrap_or(UNK_ID)
        }
    }

    pub fn contains(&self, c: char) -> bool {
        self.id(c) != UNK_ID
    }

    /// Characters of `text` (in order, without repeats) that are not in the vocabulary.
    pub fn unknown_chars(&self, text: &str) -> Vec<char> {
        let mut out: Vec<char> = Vec::new();
        for c in text.chars() {
            if !self.contains(c) && !out.contains(&c) {
                out.push(c);
            }
        }
        out
    }

    /// One id per character; characters outside the vocabulary become `<unk>`.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        text.chars().map(|c| self.id(c)).collect()
    }

    pub fn encode_into(&self, text: &str, out: &mut Vec<u32>) {
        out.extend(text.chars().map(|c| self.id(c)));
    }

    /// The same as `encode`, through the tokenizers pipeline (for tests and cross-checks).
    pub fn encode_slow(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self.inner.encode(text, false).map_err(|e| anyhow!("tokenizers: {e}"))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Text of one token: its character, or the special token's name.
    pub fn token_str(&self, id: u32) -> &str {
        match id {
            EOR_ID => EOR,
            UNK_ID => UNK,
            _ => "",
        }
    }

    pub fn char_of(&self, id: u32) -> Option<char> {
        self.chars.get(id as usize).copied().flatten()
    }

    /// Decodes ids; `<eor>` and `<unk>` are written out by name.
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut s = String::with_capacity(ids.len());
        for &id in ids {
            match self.char_of(id) {
                Some(c) => s.push(c),
                None => s.push_str(self.token_str(id)),
            }
        }
        s
    }

    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_unknowns() {
        let tok = CharTokenizer::build(["aab\nb c\tcé🙂🙂", "aabbcc\n  éé🙂"], 2).unwrap();
        let text = "a b\ncé🙂";
        assert_eq!(tok.decode(&tok.encode(text)), text);
        assert_eq!(tok.encode("z")[0], UNK_ID);
        assert_eq!(tok.encode(text), tok.encode_slow(text).unwrap());
        assert_eq!(tok.encode_slow("a<eor>b").unwrap(), vec![tok.id('a'), EOR_ID, tok.id('b')]);
        assert_eq!(tok.inner().decode(&tok.encode("ab c"), false).unwrap(), "ab c");
    }

    #[test]
    fn save_load_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let tok = CharTokenizer::build(["hello world"], 1).unwrap();
        let p = dir.path().join("tokenizer.json");
        tok.save(&p).unwrap();
        let back = CharTokenizer::load(&p).unwrap();
        assert_eq!(back.vocab_size(), tok.vocab_size());
        assert_eq!(back.encode("hello"), tok.encode("hello"));
    }
}
