//! Serde for float vectors that may hold infinities or NaN: JSON has no such numbers, so they
//! are written as the strings `"inf"`, `"-inf"` and `"nan"` (the convention of the conformance
//! vectors) and read back from either form.

use serde::de::{Deserializer, Error};
use serde::ser::{SerializeSeq, Serializer};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(untagged)]
enum Repr {
    Num(f64),
    Text(String),
}

fn from_repr<E: Error>(r: Repr) -> Result<f64, E> {
    match r {
        Repr::Num(x) => Ok(x),
        Repr::Text(s) => match s.as_str() {
            "inf" => Ok(f64::INFINITY),
            "-inf" => Ok(f64::NEG_INFINITY),
            "nan" => Ok(f64::NAN),
            other => Err(E::custom(format!("`{other}` is not a number"))),
        },
    }
}

/// Serializes a float slice with non-finite values as strings.
pub fn serialize<S: Serializer>(v: &[f64], s: S) -> Result<S::Ok, S::Error> {
    let mut seq = s.serialize_seq(Some(v.len()))?;
    for x in v {
        if x.is_finite() {
            seq.serialize_element(x)?;
        } else if x.is_nan() {
            seq.serialize_element("nan")?;
        } else if *x > 0.0 {
            seq.serialize_element("inf")?;
        } else {
            seq.serialize_element("-inf")?;
        }
    }
    seq.end()
}

/// Reads what [`serialize`] wrote.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
    Vec::<Repr>::deserialize(d)?
        .into_iter()
        .map(from_repr)
        .collect()
}

#[cfg(test)]
mod tests {
    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct T {
        #[serde(with = "super")]
        v: Vec<f64>,
    }

    #[test]
    fn round_trips_non_finite_values() {
        let t = T {
            v: vec![f64::NEG_INFINITY, 1.5, f64::INFINITY],
        };
        let s = serde_json::to_string(&t).unwrap();
        assert_eq!(s, r#"{"v":["-inf",1.5,"inf"]}"#);
        assert_eq!(serde_json::from_str::<T>(&s).unwrap(), t);
    }
}
