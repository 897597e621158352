//! Integration tests of stunnerd.
