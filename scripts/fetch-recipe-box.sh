#!/usr/bin/env bash
# Downloads the full Recipe Box corpus (Eight Portions, ~125k recipes from allrecipes, epicurious and
# foodnetwork) and unpacks its three JSON files into data/recipes/, where gen looks by default.
#
#   scripts/fetch-recipe-box.sh [DEST]      # DEST defaults to data/recipes
#
# Needs curl (or wget) and unzip. Safe to re-run: an existing complete download is kept.
set -euo pipefail

URL="${RECIPE_BOX_URL:-https://storage.googleapis.com/recipe-box/recipes_raw.zip}"
DEST="${1:-$(dirname "$0")/../data/recipes}"
FILES=(recipes_raw_nosource_ar.json recipes_raw_nosource_epi.json recipes_raw_nosource_fn.json)

mkdir -p "$DEST"
DEST="$(cd "$DEST" && pwd)"

have_all() { for f in "${FILES[@]}"; do [ -s "$DEST/$f" ] || return 1; done; }
if have_all; then
  echo "Recipe Box already in $DEST"; exit 0
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "downloading $URL" >&2
if command -v curl >/dev/null; then
  curl --fail --location --retry 3 --output "$tmp/recipes_raw.zip" "$URL"
elif command -v wget >/dev/null; then
  wget --tries=3 -O "$tmp/recipes_raw.zip" "$URL"
else
  echo "error: need curl or wget to download $URL" >&2; exit 1
fi

# A truncated or HTML error page fails here rather than later in training.
unzip -tq "$tmp/recipes_raw.zip" >/dev/null || { echo "error: $URL did not give a valid zip archive" >&2; exit 1; }
unzip -oq "$tmp/recipes_raw.zip" -d "$tmp/unpacked"
for f in "${FILES[@]}"; do
  src="$(find "$tmp/unpacked" -name "$f" -print -quit)"
  [ -n "$src" ] || { echo "error: the archive has no $f; has the dataset changed?" >&2; exit 1; }
  mv "$src" "$DEST/$f"
done
echo "Recipe Box unpacked into $DEST:" >&2
ls -l "$DEST" >&2
echo "next: gen corpus --data $DEST" >&2
