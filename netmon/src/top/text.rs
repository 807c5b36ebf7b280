//! Names chosen by the host's users (interfaces, processes, cgroups) made safe for a
//! terminal: escape sequences and control characters removed, so that a name cannot move the
//! cursor, recolour the screen or talk to the terminal.
pub fn clean(name: &str) -> String {
    let stripped = strip_ansi_escapes::strip_str(name);
    stripped.chars().filter(|c| !c.is_control()).collect()
}

/// A rate the way top shows it: 1.2k, 3.4M.
pub fn human(value: f64) -> String {
    const UNITS: [&str; 5] = ["", "k", "M", "G", "T"];
    let mut value = value;
    let mut unit = 0;
    while value.abs() >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 && value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}{}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_and_control_characters_are_removed() {
        assert_eq!(clean("eth0"), "eth0");
        assert_eq!(clean("<i>\u{1b}[31mred\u{1b}[0m"), "<i>red");
        assert_eq!(clean("a\u{1b}]0;title\u{7}b"), "ab");
        assert_eq!(clean("x\ty\r\nz\u{9b}2J"), "xyz2J");
        assert_eq!(clean("名前"), "名前");
    }

    #[test]
    fn rates_are_short() {
        assert_eq!(human(0.0), "0");
        assert_eq!(human(999.0), "999");
        assert_eq!(human(1234.0), "1.2k");
        assert_eq!(human(5_600_000.0), "5.6M");
    }
}
