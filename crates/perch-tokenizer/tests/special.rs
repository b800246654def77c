//! Special tokens in text: parsed only when asked, BOS/EOS per the vocabulary's flags, and
//! end-of-generation detection. (Exact ids against llama.cpp are in tests/peer.rs; these
//! tests spell out the behaviour on the chat model perch serves first, SmolLM2.)

mod common;

#[test]
fn smollm2_chat_markers_parse_only_when_asked() {
    let tok = common::smollm2();
    let start = tok.token_id("<|im_start|>").expect("<|im_start|>");
    let end = tok.token_id("<|im_end|>").expect("<|im_end|>");
    let text = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n";

    let parsed = tok.encode(text, false, true).unwrap();
    assert_eq!(parsed.first(), Some(&start));
    assert_eq!(parsed.iter().filter(|&&i| i == end).count(), 1);

    let literal = tok.encode(text, false, false).unwrap();
    assert!(
        !literal.contains(&start) && !literal.contains(&end),
        "{literal:?}"
    );
    // Unparsed, the markers are ordinary text and decode back to themselves.
    assert_eq!(tok.decode(&literal, false).unwrap(), text);
    // Parsed, they are control tokens: rendered only when asked.
    assert_eq!(tok.decode(&parsed, true).unwrap(), text);
    assert_eq!(
        tok.decode(&parsed, false).unwrap(),
        "user\nWhat is the capital of France?\n"
    );
}

#[test]
fn smollm2_special_ids_and_end_of_generation() {
    let tok = common::smollm2();
    assert_eq!(tok.n_vocab(), 49152);
    assert_eq!(tok.bos(), Some(1));
    assert_eq!(tok.eos(), Some(2));
    assert!(!tok.add_bos(), "SmolLM2 sets add_bos_token = false");
    let im_end = tok.token_id("<|im_end|>").unwrap();
    let eot = tok.token_id("<|endoftext|>").unwrap();
    assert!(tok.is_eog(im_end) && tok.is_eog(eot));
    assert!(!tok.is_eog(tok.token_id("<|im_start|>").unwrap()));
    assert!(!tok.is_eog(tok.n_vocab() + 7));
    assert!(tok.token_attr(im_end).unwrap().is_control());
    // No BOS is added even with add_special, as the file says.
    assert_eq!(
        tok.encode("Hi", true, false).unwrap(),
        tok.encode("Hi", false, false).unwrap()
    );
}

#[test]
fn bos_and_eos_follow_the_vocabulary_flags() {
    // llama-spm: BOS added, no EOS.
    let spm = common::load("llama-spm");
    let ids = spm.encode("Hello", true, false).unwrap();
    assert_eq!(ids.first(), Some(&1));
    assert_ne!(ids.last(), Some(&2));
    // nomic-bert-moe (Unigram): BOS and EOS.
    let ugm = common::load("nomic-bert-moe");
    let ids = ugm.encode("Hello", true, false).unwrap();
    assert_eq!(
        (ids.first(), ids.last()),
        (ugm.bos().as_ref(), ugm.eos().as_ref())
    );
    // bert-bge (WordPiece): [CLS] ... [SEP].
    let wpm = common::load("bert-bge");
    let ids = wpm.encode("Hello", true, false).unwrap();
    assert_eq!((ids[0], *ids.last().unwrap()), (101, 102));
    assert!(
        wpm.encode("Hello", false, false)
            .unwrap()
            .iter()
            .all(|&i| i != 101 && i != 102)
    );
}

#[test]
fn user_defined_tokens_are_split_even_without_parse_special() {
    // gpt-neox / mpt define runs of spaces as user-defined tokens.
    let tok = common::load("mpt");
    let run = tok
        .token_id("    ")
        .expect("a user-defined run of four spaces");
    assert!(tok.token_attr(run).unwrap().is_user_defined());
    let ids = tok.encode("a    b", false, false).unwrap();
    assert!(ids.contains(&run), "{ids:?}");
}

#[test]
fn phi3_special_tokens_swallow_following_whitespace() {
    // llama.cpp gives Phi-3's special tokens RSTRIP: the newline after <|user|> goes away.
    let tok = common::load("phi-3");
    let user = tok.token_id("<|user|>").expect("<|user|>");
    let with_nl = tok.encode("<|user|>\nHi", false, true).unwrap();
    let without = tok.encode("<|user|>Hi", false, true).unwrap();
    assert_eq!(with_nl[0], user);
    assert_eq!(with_nl, without);
}
