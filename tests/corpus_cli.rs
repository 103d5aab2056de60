//! `gen corpus` on good and bad input.

mod common;
use common::*;

#[test]
fn help_lists_subcommands() {
    let out = ok(&["--help"]);
    for cmd in ["corpus", "train-recipes", "eval"] {
        assert!(out.contains(cmd), "--help lacks {cmd}:\n{out}");
    }
    assert!(ok(&["corpus", "--help"]).contains("[default: 0.02]"));
}

#[test]
fn fixture_counts_and_drop_reasons() {
    let out = ok(&["corpus", "--data", &fixture("recipes_small.json"), "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["recipes_read"], 53);
    assert_eq!(v["recipes_kept"], 48);
    assert_eq!(v["dropped_no_title"], 1);
    assert_eq!(v["dropped_no_ingredients"], 2); // an empty list and a missing field
    assert_eq!(v["dropped_no_instructions"], 1); // only ADVERTISEMENT and blanks
    assert_eq!(v["duplicates"], 1);
    assert_eq!(v["train_recipes"].as_u64().unwrap() + v["val_recipes"].as_u64().unwrap(), 48);
    assert!(v["vocab_size"].as_u64().unwrap() > 30);
}

#[test]
fn plain_text_is_read_by_extension() {
    let out = ok(&["corpus", "--data", &fixture("tiny.txt"), "--min-char-count", "1", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["recipes_kept"], 3); // three paragraphs
}

#[test]
fn split_does_not_depend_on_file_order() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(fixture("recipes_small.json")).unwrap();
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text).unwrap();
    let mut entries: Vec<_> = map.into_iter().collect();
    entries.reverse();
    let (a, b) = entries.split_at(20);
    for (name, part) in [("b.json", a), ("a.json", b)] {
        let obj: serde_json::Map<_, _> = part.iter().cloned().collect();
        std::fs::write(dir.path().join(name), serde_json::to_string(&obj).unwrap()).unwrap();
    }
    let one = ok(&["corpus", "--data", &fixture("recipes_small.json"), "--json", "--val-fraction", "0.3"]);
    let two = ok(&["corpus", "--data", dir.path().to_str().unwrap(), "--json", "--val-fraction", "0.3"]);
    let (one, two): (serde_json::Value, serde_json::Value) = (serde_json::from_str(&one).unwrap(), serde_json::from_str(&two).unwrap());
    for k in ["recipes_kept", "val_recipes", "val_chars", "vocab_size", "duplicates"] {
        assert_eq!(one[k], two[k], "{k}");
    }
}

#[test]
fn missing_path_points_to_the_fetch_script() {
    fails(&["corpus", "--data", "/nonexistent/recipes.json"], &["/nonexistent/recipes.json", "fetch-recipe-box.sh"]);
}

#[test]
fn malformed_json_names_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.json");
    std::fs::write(&p, "{\n \"a\": {\"title\": \"x\",\n  \"ingredients\": [\"1 egg\" \"2 eggs\"]}\n}\n").unwrap();
    fails(&["corpus", "--data", p.to_str().unwrap()], &["bad.json", "malformed JSON", "line 3", "column"]);
}

#[test]
fn wrong_shape_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("list.json");
    std::fs::write(&p, "[{\"title\": \"x\"}]").unwrap();
    fails(&["corpus", "--data", p.to_str().unwrap()], &["list.json", "expected a JSON object"]);
    let p = dir.path().join("ing.json");
    std::fs::write(&p, r#"{"r1": {"title": "x", "ingredients": "1 egg", "instructions": "boil"}}"#).unwrap();
    fails(&["corpus", "--data", p.to_str().unwrap()], &["ing.json", "r1", "ingredients"]);
}

#[test]
fn non_utf8_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("latin1.txt");
    std::fs::write(&p, b"caf\xe9 au lait\n").unwrap();
    fails(&["corpus", "--data", p.to_str().unwrap()], &["latin1.txt", "UTF-8", "offset 3"]);
}

#[test]
fn empty_directory_and_empty_corpus() {
    let dir = tempfile::tempdir().unwrap();
    fails(&["corpus", "--data", dir.path().to_str().unwrap()], &["no *.json files"]);
    let p = dir.path().join("none.json");
    std::fs::write(&p, r#"{"a": {"title": "", "ingredients": ["x"], "instructions": "y"}, "b": null}"#).unwrap();
    fails(&["corpus", "--data", p.to_str().unwrap()], &["no usable recipe"]);
    fails(&["corpus", "--data", p.to_str().unwrap(), "--val-fraction", "1.5"], &["--val-fraction"]);
}

#[test]
fn real_corpus_when_present() {
    let Some(p) = shared_corpus() else {
        eprintln!("skipped: ../shared/data/recipes/recipes.json is not on this machine");
        return;
    };
    let v: serde_json::Value = serde_json::from_str(&ok(&["corpus", "--data", p.to_str().unwrap(), "--json"])).unwrap();
    assert!(v["recipes_kept"].as_u64().unwrap() >= 18_000);
    let vocab = v["vocab_size"].as_u64().unwrap();
    assert!((80..=250).contains(&vocab), "{vocab}");
    assert!(v["encode_seconds"].as_f64().unwrap() < 10.0);
}
