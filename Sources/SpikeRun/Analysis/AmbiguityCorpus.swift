/// A stimulus set for the ambiguity study: 24 ambiguous English sentences and 24
/// unambiguous controls, written for spikerun.
///
/// How the controls are matched: each control is paired with one ambiguous sentence and has
/// exactly the same number of words; it keeps the frame of its partner and changes only what
/// carries the ambiguity, so the ambiguous reading disappears:
/// - lexical pairs swap the ambiguous noun for a common noun with a single relevant sense
///   ("bat" → "key", "crane" → "heron");
/// - structural pairs remove the second parse with a minimal change: an unambiguous verb form
///   ("walked" → "walking" for a reduced relative), a comma after a subordinate clause, a verb
///   that takes no object ("forgot" → "thought"), or a fronted prepositional phrase that can
///   only attach to the verb.
/// Sentence length is the main confound of per-sentence measures (entropy grows with the
/// number of tokens), hence word counts are equal. With the SmolLM2-135M tokenizer (no BOS)
/// every pair is also within ±1 token: 21 pairs have equal counts, lex05, lex11 and str04
/// differ by one (checked by a test on the real model).
public enum AmbiguityCorpus {
    /// Kind of ambiguity.
    public enum Kind: String, Sendable, Hashable, Codable, CaseIterable {
        /// One word with two unrelated senses that the sentence does not resolve.
        case lexical
        /// Two parses: garden path (temporary) or attachment / scope (global).
        case structural
    }

    /// One ambiguous sentence with its matched control.
    public struct Pair: Sendable, Hashable, Codable {
        /// Stable id, e.g. `lex01`.
        public var id: String
        /// Kind of ambiguity.
        public var kind: Kind
        /// The ambiguous sentence.
        public var ambiguous: String
        /// The matched unambiguous control.
        public var control: String
        /// What is ambiguous (the two readings).
        public var note: String
    }

    /// Category label of ambiguous sentences.
    public static let ambiguousCategory = "ambiguous"
    /// Category label of controls.
    public static let controlCategory = "unambiguous"

    /// The 24 pairs: 12 lexical, 12 structural.
    public static let pairs: [Pair] = [
        .init(id: "lex01", kind: .lexical, ambiguous: "She could not find the bat anywhere.",
              control: "She could not find the key anywhere.", note: "bat: animal / club"),
        .init(id: "lex02", kind: .lexical, ambiguous: "The old man sat down near the bank.",
              control: "The old man sat down near the fountain.", note: "bank: river side / money"),
        .init(id: "lex03", kind: .lexical, ambiguous: "He watched the pitcher from his seat.",
              control: "He watched the runner from his seat.", note: "pitcher: jug / baseball player"),
        .init(id: "lex04", kind: .lexical, ambiguous: "They noticed the mole on the photo.",
              control: "They noticed the scratch on the photo.", note: "mole: skin mark / animal / spy"),
        .init(id: "lex05", kind: .lexical, ambiguous: "The crane was standing by the water.",
              control: "The heron was standing by the water.", note: "crane: bird / machine"),
        .init(id: "lex06", kind: .lexical, ambiguous: "We watched her duck under the wall.",
              control: "We watched her crawl under the wall.", note: "duck: verb / her pet bird"),
        .init(id: "lex07", kind: .lexical, ambiguous: "The seal was lying on the rock.",
              control: "The lizard was lying on the rock.", note: "seal: animal / stamp"),
        .init(id: "lex08", kind: .lexical, ambiguous: "She left the glasses on the table.",
              control: "She left the plates on the table.", note: "glasses: spectacles / drinking glasses"),
        .init(id: "lex09", kind: .lexical, ambiguous: "They were waiting for the coach outside.",
              control: "They were waiting for the taxi outside.", note: "coach: bus / trainer"),
        .init(id: "lex10", kind: .lexical, ambiguous: "The match was over in seconds.",
              control: "The meeting was over in seconds.", note: "match: game / burning stick"),
        .init(id: "lex11", kind: .lexical, ambiguous: "She looked at the mouse on the desk.",
              control: "She looked at the stapler on the desk.", note: "mouse: animal / computer device"),
        .init(id: "lex12", kind: .lexical, ambiguous: "The spring was hidden behind the trees.",
              control: "The cottage was hidden behind the trees.", note: "spring: water source / coil"),
        .init(id: "str01", kind: .structural, ambiguous: "The old train the new recruits every spring.",
              control: "The officers train the new recruits every spring.",
              note: "garden path: 'the old train' as noun phrase / 'the old' as subject"),
        .init(id: "str02", kind: .structural, ambiguous: "The dog walked along the lake barked.",
              control: "The dog walking along the lake barked.",
              note: "garden path: main verb / reduced relative"),
        .init(id: "str03", kind: .structural, ambiguous: "The student forgot the answer was wrong.",
              control: "The student thought the answer was wrong.",
              note: "temporary: 'the answer' as object / as subject of a clause"),
        .init(id: "str04", kind: .structural, ambiguous: "While she cooked the soup boiled over quickly.",
              control: "While she cooked, the soup boiled over quickly.",
              note: "garden path: 'the soup' as object of 'cooked' / subject of 'boiled'"),
        .init(id: "str05", kind: .structural, ambiguous: "He hit the thief with the umbrella.",
              control: "He hit the thief with great force.",
              note: "attachment: instrument / the thief who held the umbrella"),
        .init(id: "str06", kind: .structural, ambiguous: "They followed the man with the flashlight.",
              control: "They followed the man across the field.",
              note: "attachment: they had the flashlight / the man had it"),
        .init(id: "str07", kind: .structural, ambiguous: "Someone called the sister of the actor who was ill.",
              control: "Someone called the brother of the actress after the show.",
              note: "relative clause attachment: the sister / the actor was ill"),
        .init(id: "str08", kind: .structural, ambiguous: "We need old men and women to help.",
              control: "We need many people to help us today.",
              note: "scope: old (men and women) / (old men) and women"),
        .init(id: "str09", kind: .structural, ambiguous: "Racing horses can be expensive.",
              control: "Owning horses can be expensive.",
              note: "gerund (to race horses) / adjective (horses that race)"),
        .init(id: "str10", kind: .structural, ambiguous: "The girl told the story cried.",
              control: "The girl hearing the story cried.",
              note: "garden path: main verb / reduced relative ('who was told')"),
        .init(id: "str11", kind: .structural, ambiguous: "He saw the photo of the man in the kitchen.",
              control: "In the kitchen he saw the photo of the man.",
              note: "attachment: seeing / the photo / the man in the kitchen"),
        .init(id: "str12", kind: .structural, ambiguous: "The detective questioned the man on the bridge.",
              control: "On the bridge the detective questioned the man.",
              note: "attachment: questioning on the bridge / the man on the bridge"),
    ]

    /// All 48 sentences as ``SentenceInfo`` (ambiguous ones first, then controls, each in pair
    /// order), with category `ambiguous` / `unambiguous` and subcategory = kind.
    public static var sentences: [SentenceInfo] {
        pairs.map { SentenceInfo(text: $0.ambiguous, category: ambiguousCategory, subcategory: $0.kind.rawValue) }
            + pairs.map { SentenceInfo(text: $0.control, category: controlCategory, subcategory: $0.kind.rawValue) }
    }

    /// Words of a sentence (split on spaces, punctuation ignored).
    public static func wordCount(_ s: String) -> Int {
        s.split(separator: " ").filter { $0.contains(where: \.isLetter) }.count
    }
}
