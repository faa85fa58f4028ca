"""Short reflective notes for the demo page, written for this project (not the original system's text).

One note per emotion (for the fused label) and one per pair of emotions (for when the face and the
words disagree). They are prompts for reflection, not readings of anyone's state.
"""
from __future__ import annotations

from emotion_fusion.data.labels import CLASSES

DISCLAIMER = ("This is a research demo, not a diagnostic tool: it guesses from one picture and one "
              "sentence, and it cannot know how anyone feels. If you are struggling, talk to someone you "
              "trust or a professional.")

EMOTION_NOTES = {
    "angry": "Anger often points at something that matters to you. Naming what feels unfair can be a "
             "first step towards saying it calmly.",
    "disgust": "Disgust is a signal that something crosses a line for you. It can help to ask which "
               "value or boundary is being touched.",
    "fear": "Fear tries to protect you. Breathing slowly and naming the worry out loud can make it "
            "smaller and easier to look at.",
    "happy": "Something is going well. It can be worth pausing to notice what helped, so you can find "
             "your way back to it.",
    "neutral": "A calm, even moment. Not every moment needs a strong feeling; steadiness is a fine "
               "place to be.",
    "sad": "Sadness often follows a loss or a hope that did not work out. Being gentle with yourself, "
           "and sharing it with someone, can help.",
    "surprise": "Something unexpected happened. Giving yourself a moment before reacting can help you "
                "decide how you feel about it.",
}

# One note per unordered pair; the key is the two labels in canonical (CLASSES) order.
PAIR_NOTES = {
    ("angry", "disgust"): "Irritation and distaste often travel together: something feels wrong, and "
                          "the face and the words show different sides of it.",
    ("angry", "fear"): "Anger can sit on top of worry. It may help to ask what feels threatened.",
    ("angry", "happy"): "A smile with sharp words, or the other way round, can be sarcasm, relief, or "
                        "keeping the peace. Only you know which.",
    ("angry", "neutral"): "A calm surface over frustrated words (or a tense face over plain words) is "
                          "common; people often hold back what they feel.",
    ("angry", "sad"): "Anger and sadness are close cousins: hurt can show up as either.",
    ("angry", "surprise"): "Sudden news can bring a jolt before we know whether we are upset.",
    ("disgust", "fear"): "Recoiling and worrying both say 'keep away'; the two signals may describe "
                         "the same moment.",
    ("disgust", "happy"): "A grimace with happy words may be playful teasing, or mixed feelings about "
                          "something.",
    ("disgust", "neutral"): "One signal is neutral while the other shows distaste; people often keep a "
                            "straight face about things they dislike.",
    ("disgust", "sad"): "Disappointment can feel like both sadness and distaste.",
    ("disgust", "surprise"): "An unpleasant surprise can look like either; both react to something "
                             "unexpected.",
    ("fear", "happy"): "Excitement and nervousness feel alike in the body; a big day can be both.",
    ("fear", "neutral"): "A composed face can hide worry, and worried words can come from a calm "
                         "moment of reflection.",
    ("fear", "sad"): "Worry about what might happen and sadness about what has happened often come "
                     "together.",
    ("fear", "surprise"): "Fear and surprise share wide eyes and raised brows; even people confuse "
                          "them.",
    ("happy", "neutral"): "A quiet contentment can look neutral; joy does not always show on the "
                          "face.",
    ("happy", "sad"): "Smiling through sadness, or sad words said lightly, is very human; mixed "
                      "feelings are normal.",
    ("happy", "surprise"): "A pleasant surprise: happiness and surprise often arrive together.",
    ("neutral", "sad"): "A neutral face can carry a heavy heart; words sometimes say what the face "
                        "does not.",
    ("neutral", "surprise"): "One signal stays calm while the other is startled; a surprise may "
                             "already be fading.",
    ("sad", "surprise"): "Unexpected news can be sad news; the shock may come before the sadness.",
}


def emotion_note(label: str) -> str:
    """The note for one emotion."""
    return EMOTION_NOTES[label]


def pair_note(a: str, b: str) -> str:
    """The note for two different emotions, in either order."""
    key = tuple(sorted((a, b), key=CLASSES.index))
    return PAIR_NOTES[key]
