"""What the hotline says, in every language it speaks, and how each prompt is voiced.

Built-in texts live here; `Rules.prompts` overrides them per language and key. `prompt()` turns
a key into a `Prompt` the TwiML layer renders: `<Say>` with the language's voice, or `<Play>` of
a recorded file for languages Twilio cannot speak (Estonian).

Audio rule (languages with `audio_base_url`): a prompt gets `audio_url` only when its words are
fixed by the rules file, i.e. every placeholder in its text is one of `AUDIO_SAFE_VALUES`
(company, department, digit, options, time). The file is `{audio_base_url}/{key}.wav`, or
`{key}_{digit}.wav` when the prompt names a digit (one recording per menu option). Prompts that
carry per-call values (position, minutes, next_open, client, number, reason) have no file:
`audio_url` is None and `fallback` holds the same prompt in a language Twilio can speak, so the
renderer can say that instead of sending Estonian text to `<Say>`.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from routing_rules.schema import Rules

# Placeholders whose values come from the rules file, so a recording made once stays right.
AUDIO_SAFE_VALUES = frozenset({"company", "department", "digit", "options", "time"})
# Placeholders `prompt()` fills from the rules in any text, so overrides may use them anywhere.
ALWAYS_FILLED = frozenset({"company", "department"})

EN: dict[str, str] = {
    "department": "customer service",
    "greeting_morning": "Good morning, and thank you for calling {company}, {department}.",
    "greeting_afternoon": "Good afternoon, and thank you for calling {company}, {department}.",
    "greeting_evening": "Good evening, and thank you for calling {company}, {department}.",
    "menu": "Please listen to the following options. {options}",
    "menu_queue_option": "For {department}, press {digit}.",
    "menu_language": "To choose another language, press {digit}.",
    "language_option": "For English, press {digit}.",
    "menu_opt_out": "If you do not want us to call you again, press {digit}.",
    "menu_complaint": "To make a complaint, press {digit}.",
    "no_input": "Sorry, we did not receive your choice.",
    "invalid_choice": "Sorry, that is not a valid choice.",
    "connecting": "Thank you. We are connecting you to an agent.",
    "recording_consent": "This call may be recorded for quality and training purposes.",
    "closed": "We are closed at the moment. We will be open again {next_open}.",
    "voicemail_prompt": (
        "Please leave your name, your phone number and a short message after the tone. "
        "Press the hash key when you have finished."
    ),
    "voicemail_thanks": "Thank you. Your message has been recorded and we will get back to you.",
    "all_busy": "All our agents are busy at the moment.",
    "queue_position": "You are number {position} in line. Estimated wait {minutes} minutes.",
    "high_volume_offer": (
        "To leave a voicemail, press 1. To have us call you back, press 2. "
        "Or stay on the line to keep your place."
    ),
    "closed_offer": "To leave a voicemail, press 1. To have us call you back when we open, press 2.",
    "callback_confirm_number": (
        "We will call you back on {number}. To confirm, press 1. To enter another number, press 2."
    ),
    "callback_enter_number": (
        "Please enter your phone number, including the country code, then press the hash key."
    ),
    "callback_time": "When should we call you back? {options}",
    "callback_time_asap": "As soon as possible, press {digit}.",
    "callback_time_after": "After {time}, press {digit}.",
    "callback_booked": "Thank you. We will call you back, and you keep your place in line. Goodbye.",
    "opt_out_confirm": (
        "To confirm that we should not call you again, press 1. To return to the menu, press 2."
    ),
    "opt_out_done": "Thank you. We will not call you again. Goodbye.",
    "complaint_opened": "Your complaint has been registered. We are connecting you to a supervisor.",
    "survey_question": "Please rate our service today from 1 to 5, where 5 is excellent.",
    "survey_thanks": "Thank you for your feedback. Goodbye.",
    "apology": "We are sorry, something went wrong on our side.",
    "whisper": "Call from {client} for {department}.",
    "callback_whisper": "Callback for {client}. Connecting you now.",
    "outbound_whisper": "Call to {client}. Connecting you now.",
    "outbound_blocked": "This call cannot be placed now: {reason}.",
}

RU: dict[str, str] = {
    "department": "служба поддержки клиентов",
    "greeting_morning": "Доброе утро! Вы позвонили в {company}, {department}.",
    "greeting_afternoon": "Добрый день! Вы позвонили в {company}, {department}.",
    "greeting_evening": "Добрый вечер! Вы позвонили в {company}, {department}.",
    "menu": "Пожалуйста, выберите один из вариантов. {options}",
    "menu_queue_option": "{department} — нажмите {digit}.",
    "menu_language": "Чтобы выбрать другой язык, нажмите {digit}.",
    "language_option": "Для обслуживания на русском языке нажмите {digit}.",
    "menu_opt_out": "Если вы не хотите, чтобы мы вам звонили, нажмите {digit}.",
    "menu_complaint": "Чтобы подать жалобу, нажмите {digit}.",
    "no_input": "Извините, мы не получили ваш выбор.",
    "invalid_choice": "Извините, такого варианта нет.",
    "connecting": "Спасибо. Соединяем вас с оператором.",
    "recording_consent": "Разговор может быть записан для контроля качества обслуживания.",
    "closed": "Сейчас мы не работаем. Мы снова будем на связи {next_open}.",
    "voicemail_prompt": (
        "Пожалуйста, после сигнала назовите своё имя, номер телефона и оставьте сообщение. "
        "Чтобы закончить, нажмите решётку."
    ),
    "voicemail_thanks": "Спасибо. Ваше сообщение записано, мы обязательно с вами свяжемся.",
    "all_busy": "Все операторы сейчас заняты.",
    "queue_position": (
        "Ваш номер в очереди: {position}. Примерное время ожидания в минутах: {minutes}."
    ),
    "high_volume_offer": (
        "Чтобы оставить голосовое сообщение, нажмите 1. Чтобы мы вам перезвонили, нажмите 2. "
        "Или оставайтесь на линии — ваше место в очереди сохранится."
    ),
    "closed_offer": "Чтобы оставить голосовое сообщение, нажмите 1. Чтобы мы перезвонили, когда откроемся, нажмите 2.",
    "callback_confirm_number": (
        "Мы перезвоним вам по номеру {number}. Если номер верный, нажмите 1. "
        "Чтобы ввести другой номер, нажмите 2."
    ),
    "callback_enter_number": "Пожалуйста, введите номер телефона с кодом страны и нажмите решётку.",
    "callback_time": "Когда вам перезвонить? {options}",
    "callback_time_asap": "Как можно скорее — нажмите {digit}.",
    "callback_time_after": "После {time} — нажмите {digit}.",
    "callback_booked": (
        "Спасибо. Мы вам перезвоним, а ваше место в очереди сохранится. До свидания."
    ),
    "opt_out_confirm": (
        "Чтобы подтвердить, что мы больше не должны вам звонить, нажмите 1. "
        "Чтобы вернуться в меню, нажмите 2."
    ),
    "opt_out_done": "Спасибо. Мы больше не будем вам звонить. До свидания.",
    "complaint_opened": "Ваша жалоба зарегистрирована. Соединяем вас с руководителем.",
    "survey_question": "Пожалуйста, оцените наше обслуживание от 1 до 5, где 5 — отлично.",
    "survey_thanks": "Спасибо за отзыв. До свидания.",
    "apology": "Приносим извинения, у нас произошёл технический сбой.",
    "whisper": "Звонок от клиента {client}, отдел: {department}.",
    "callback_whisper": "Обратный звонок клиенту {client}. Соединяем.",
    "outbound_whisper": "Звонок клиенту {client}. Соединяем.",
    "outbound_blocked": "Сейчас этот звонок невозможен: {reason}.",
}

PL: dict[str, str] = {
    "department": "obsługa klienta",
    "greeting_morning": "Dzień dobry! Dziękujemy za telefon do {company}, {department}.",
    "greeting_afternoon": "Dzień dobry! Dziękujemy za telefon do {company}, {department}.",
    "greeting_evening": "Dobry wieczór! Dziękujemy za telefon do {company}, {department}.",
    "menu": "Prosimy wybrać jedną z opcji. {options}",
    "menu_queue_option": "{department} — naciśnij {digit}.",
    "menu_language": "Aby wybrać inny język, naciśnij {digit}.",
    "language_option": "Aby kontynuować po polsku, naciśnij {digit}.",
    "menu_opt_out": "Jeśli nie chcesz, abyśmy do Ciebie dzwonili, naciśnij {digit}.",
    "menu_complaint": "Aby złożyć skargę, naciśnij {digit}.",
    "no_input": "Przepraszamy, nie otrzymaliśmy Twojego wyboru.",
    "invalid_choice": "Przepraszamy, nie ma takiej opcji.",
    "connecting": "Dziękujemy. Łączymy z konsultantem.",
    "recording_consent": "Rozmowa może być nagrywana w celu zapewnienia jakości obsługi.",
    "closed": "Obecnie nie pracujemy. Zapraszamy ponownie {next_open}.",
    "voicemail_prompt": (
        "Po sygnale zostaw, proszę, swoje imię, numer telefonu i krótką wiadomość. "
        "Na koniec naciśnij krzyżyk."
    ),
    "voicemail_thanks": "Dziękujemy. Wiadomość została nagrana, skontaktujemy się z Tobą.",
    "all_busy": "Wszyscy konsultanci są obecnie zajęci.",
    "queue_position": (
        "Twoje miejsce w kolejce: {position}. Przewidywany czas oczekiwania w minutach: {minutes}."
    ),
    "high_volume_offer": (
        "Aby zostawić wiadomość głosową, naciśnij 1. Aby zamówić oddzwonienie, naciśnij 2. "
        "Możesz też pozostać na linii i zachować swoje miejsce w kolejce."
    ),
    "closed_offer": "Aby zostawić wiadomość głosową, naciśnij 1. Aby zamówić oddzwonienie po otwarciu, naciśnij 2.",
    "callback_confirm_number": (
        "Oddzwonimy pod numer {number}. Aby potwierdzić, naciśnij 1. "
        "Aby podać inny numer, naciśnij 2."
    ),
    "callback_enter_number": (
        "Wprowadź numer telefonu z numerem kierunkowym kraju i zakończ krzyżykiem."
    ),
    "callback_time": "Kiedy mamy oddzwonić? {options}",
    "callback_time_asap": "Jak najszybciej — naciśnij {digit}.",
    "callback_time_after": "Po godzinie {time} — naciśnij {digit}.",
    "callback_booked": (
        "Dziękujemy. Oddzwonimy do Ciebie, a Twoje miejsce w kolejce zostaje zachowane. "
        "Do widzenia."
    ),
    "opt_out_confirm": (
        "Aby potwierdzić, że nie mamy już do Ciebie dzwonić, naciśnij 1. "
        "Aby wrócić do menu, naciśnij 2."
    ),
    "opt_out_done": "Dziękujemy. Nie będziemy już do Ciebie dzwonić. Do widzenia.",
    "complaint_opened": "Twoja skarga została zarejestrowana. Łączymy z kierownikiem.",
    "survey_question": "Oceń, proszę, naszą obsługę w skali od 1 do 5, gdzie 5 oznacza bardzo dobrze.",
    "survey_thanks": "Dziękujemy za opinię. Do widzenia.",
    "apology": "Przepraszamy, wystąpił błąd po naszej stronie.",
    "whisper": "Połączenie od klienta {client}, dział: {department}.",
    "callback_whisper": "Oddzwonienie do klienta {client}. Łączymy.",
    "outbound_whisper": "Połączenie do klienta {client}. Łączymy.",
    "outbound_blocked": "Tego połączenia nie można teraz wykonać: {reason}.",
}

ET: dict[str, str] = {
    "department": "klienditeenindus",
    "greeting_morning": "Tere hommikust! Siin {company}, {department}. Täname helistamast!",
    "greeting_afternoon": "Tere päevast! Siin {company}, {department}. Täname helistamast!",
    "greeting_evening": "Tere õhtust! Siin {company}, {department}. Täname helistamast!",
    "menu": "Palun kuulake järgmisi valikuid. {options}",
    "menu_queue_option": "{department} – vajutage {digit}.",
    "menu_language": "Muu keele valimiseks vajutage {digit}.",
    "language_option": "Eesti keeles jätkamiseks vajutage {digit}.",
    "menu_opt_out": "Kui te ei soovi, et me teile helistaksime, vajutage {digit}.",
    "menu_complaint": "Kaebuse esitamiseks vajutage {digit}.",
    "no_input": "Vabandust, te ei teinud valikut.",
    "invalid_choice": "Vabandust, sellist valikut ei ole.",
    "connecting": "Aitäh. Ühendame teid klienditeenindajaga.",
    "recording_consent": "Teeninduse kvaliteedi tagamiseks võidakse kõne salvestada.",
    "closed": "Oleme praegu suletud. Oleme taas avatud {next_open}.",
    "voicemail_prompt": (
        "Palun jätke pärast helisignaali oma nimi, telefoninumber ja lühike sõnum. "
        "Lõpetamiseks vajutage trellide klahvi."
    ),
    "voicemail_thanks": "Aitäh. Teie sõnum on salvestatud ja me võtame teiega ühendust.",
    "all_busy": "Kõik klienditeenindajad on hetkel hõivatud.",
    "queue_position": "Teie koht järjekorras: {position}. Eeldatav ooteaeg minutites: {minutes}.",
    "high_volume_offer": (
        "Kõnepostisõnumi jätmiseks vajutage 1. Tagasihelistamise tellimiseks vajutage 2. "
        "Või jääge liinile – teie koht järjekorras säilib."
    ),
    "closed_offer": "Kõnepostisõnumi jätmiseks vajutage 1. Tagasihelistamiseks pärast avamist vajutage 2.",
    "callback_confirm_number": (
        "Helistame teile tagasi numbril {number}. Kinnitamiseks vajutage 1. "
        "Teise numbri sisestamiseks vajutage 2."
    ),
    "callback_enter_number": (
        "Palun sisestage oma telefoninumber koos riigikoodiga ja vajutage trellide klahvi."
    ),
    "callback_time": "Millal teile tagasi helistada? {options}",
    "callback_time_asap": "Esimesel võimalusel – vajutage {digit}.",
    "callback_time_after": "Pärast kella {time} – vajutage {digit}.",
    "callback_booked": "Aitäh. Helistame teile tagasi ja teie koht järjekorras säilib. Head päeva!",
    "opt_out_confirm": (
        "Kui soovite, et me teile enam ei helistaks, vajutage kinnituseks 1. "
        "Menüüsse naasmiseks vajutage 2."
    ),
    "opt_out_done": "Aitäh. Me ei helista teile enam. Head päeva!",
    "complaint_opened": "Teie kaebus on registreeritud. Ühendame teid meeskonnajuhiga.",
    "survey_question": "Palun hinnake meie teenindust skaalal 1 kuni 5, kus 5 tähendab väga head.",
    "survey_thanks": "Aitäh tagasiside eest. Head päeva!",
    "apology": "Vabandame, meie süsteemis tekkis tõrge.",
    "whisper": "Kõne kliendilt {client}, osakond: {department}.",
    "callback_whisper": "Tagasihelistamine kliendile {client}. Ühendame.",
    "outbound_whisper": "Kõne kliendile {client}. Ühendame.",
    "outbound_blocked": "Seda kõnet ei saa praegu teha: {reason}.",
}

TEXTS: dict[str, dict[str, str]] = {"en": EN, "ru": RU, "pl": PL, "et": ET}

# How each language says "when" for {next_open}: today / tomorrow / weekday / date, with time.
WHEN: dict[str, dict[str, Any]] = {
    "en": {
        "today": "today at {time}", "tomorrow": "tomorrow at {time}",
        "weekday": "on {weekday} at {time}", "date": "on {day} {month} at {time}",
        "weekdays": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday",
                     "Sunday"),
        "months": ("January", "February", "March", "April", "May", "June", "July", "August",
                   "September", "October", "November", "December"),
    },
    "ru": {
        "today": "сегодня в {time}", "tomorrow": "завтра в {time}",
        "weekday": "{weekday} в {time}", "date": "{day} {month} в {time}",
        "weekdays": ("в понедельник", "во вторник", "в среду", "в четверг", "в пятницу",
                     "в субботу", "в воскресенье"),
        "months": ("января", "февраля", "марта", "апреля", "мая", "июня", "июля", "августа",
                   "сентября", "октября", "ноября", "декабря"),
    },
    "pl": {
        "today": "dzisiaj o {time}", "tomorrow": "jutro o {time}",
        "weekday": "{weekday} o {time}", "date": "{day} {month} o {time}",
        "weekdays": ("w poniedziałek", "we wtorek", "w środę", "w czwartek", "w piątek",
                     "w sobotę", "w niedzielę"),
        "months": ("stycznia", "lutego", "marca", "kwietnia", "maja", "czerwca", "lipca",
                   "sierpnia", "września", "października", "listopada", "grudnia"),
    },
    "et": {
        "today": "täna kell {time}", "tomorrow": "homme kell {time}",
        "weekday": "{weekday} kell {time}", "date": "{day}. {month} kell {time}",
        "weekdays": ("esmaspäeval", "teisipäeval", "kolmapäeval", "neljapäeval", "reedel",
                     "laupäeval", "pühapäeval"),
        "months": ("jaanuaril", "veebruaril", "märtsil", "aprillil", "mail", "juunil", "juulil",
                   "augustil", "septembril", "oktoobril", "novembril", "detsembril"),
    },
}


def when_text(lang: str, at: datetime, now: datetime) -> str:
    """`at` as a caller hears it ("tomorrow at 08:00"), both in the zone they are given in.

    For `{next_open}` in the "closed" prompt: pass `next_open_at(...)` and `now` converted to
    the hotline's zone.
    """
    forms = WHEN.get(lang, WHEN["en"])
    days = (at.date() - now.date()).days
    time = at.strftime("%H:%M")
    if days <= 0:
        return str(forms["today"]).format(time=time)
    if days == 1:
        return str(forms["tomorrow"]).format(time=time)
    if days < 7:
        return str(forms["weekday"]).format(weekday=forms["weekdays"][at.weekday()], time=time)
    return str(forms["date"]).format(day=at.day, month=forms["months"][at.month - 1], time=time)
KEYS: frozenset[str] = frozenset(EN)


@dataclass(frozen=True)
class Prompt:
    """One thing to say: text plus how to voice it (`<Say>` language/voice or `<Play>` url)."""

    text: str
    say_language: str | None
    voice: str | None
    audio_url: str | None
    fallback: Prompt | None = None  # same words in a spoken language, when audio_url is missing


def placeholders(template: str) -> set[str]:
    """The `{names}` a template expects (used to check admins' overrides)."""
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def template(rules: Rules, lang: str, key: str) -> str:
    """The rules' override for (lang, key), else the built-in text."""
    override = rules.prompts.get(lang, {}).get(key)  # type: ignore[call-overload]
    return override if override is not None else TEXTS[lang][key]


def prompt(rules: Rules, lang: str, key: str, **values: Any) -> Prompt:
    """Text and voicing of `key` in `lang` (unconfigured languages fall back to the default).

    A value may be a function of the language (`next_open=lambda lang: when_text(lang, …)`): a
    prompt spoken in another language, for want of a voice in this one, then says it in its own
    words rather than this language's inside another's sentence.

    `company`, `department` (the hotline's, for greetings) and `options` (for "menu") are filled
    from the rules unless passed. Unknown keys raise KeyError: that is a programming error.
    """
    if key not in KEYS:
        raise KeyError(f"unknown prompt key {key!r}")
    if lang not in rules.languages:
        lang = rules.hotline.default_language
    given = values
    values = {name: value(lang) if callable(value) else value for name, value in given.items()}  # worded per language
    text_template = template(rules, lang, key)
    names = placeholders(text_template)
    filled = _rules_values(rules, lang, key, names) | values
    filled |= _callback_values(rules, lang, key, values)
    text = text_template.format_map(filled)
    text = text[:1].upper() + text[1:]  # "{department} — press 1." starts a sentence
    voice = rules.languages[lang]  # type: ignore[index]
    audio_url = None
    # callback_time's words depend on the queue: without `queue=` no recording is the right one
    recorded = names <= AUDIO_SAFE_VALUES and (key != "callback_time" or "queue" in values)
    if voice.audio_base_url and recorded:
        audio_url = f"{voice.audio_base_url.rstrip('/')}/{audio_name(key, filled, values)}.wav"
    fallback = None
    if voice.say_language is None and audio_url is None:
        spoken = _spoken_language(rules)
        if spoken is not None:
            fallback = prompt(rules, spoken, key, **given)  # its own words for a value that has them
    return Prompt(text, voice.say_language, voice.voice, audio_url, fallback)


def audio_name(key: str, filled: dict[str, Any], values: dict[str, Any]) -> str:
    """The recording's file stem: one per key, per digit, per time and per queue's presets.

    `callback_time` lists a queue's presets and `callback_time_after` names a time, so both
    differ between queues with the same digits; the stem says which words were recorded.
    """
    name = key
    if key == "callback_time" and "queue" in values:
        name += f"_{values['queue']}"
    if "time" in filled and "{time}" in TEXTS["en"][key]:
        name += "_" + str(filled["time"]).replace(":", "")
    if "digit" in filled and "{digit}" in TEXTS["en"][key]:
        name += f"_{filled['digit']}"
    return name


def audio_files(rules: Rules, lang: str) -> dict[str, str]:
    """{file stem: words} of every recording `lang` needs under the rules (audio rule above).

    What a tool synthesises or an admin records; prompts with per-call values are left out.
    """
    calls: list[tuple[str, dict[str, Any]]] = []
    for key, text in TEXTS["en"].items():
        if key != "callback_time" and not placeholders(text) - {"company", "department", "options"}:
            calls.append((key, {}))  # callback_time: per queue, below
    for queue in rules.queues.values():
        if queue.digit is not None:
            calls.append(("menu_queue_option",
                          {"department": queue.department_for(lang), "digit": queue.digit}))
    menu = rules.menu
    for key, special in (("menu_complaint", menu.complaint_digit), ("menu_opt_out", menu.opt_out_digit),
                         ("menu_language", menu.language_digit)):
        if special is not None:
            calls.append((key, {"digit": special}))
    for number, _ in enumerate(rules.languages, start=1):
        calls.append(("language_option", {"digit": str(number)}))
    for name, queue in rules.queues.items():
        calls.append(("callback_time", {"queue": name}))
        for digit, preset in enumerate(queue.callback.time_presets, start=1):
            if preset == "asap":
                calls.append(("callback_time_asap", {"digit": str(digit)}))
            else:
                calls.append(("callback_time_after",
                              {"time": preset.removeprefix("after ").strip(), "digit": str(digit)}))
    files: dict[str, str] = {}
    for key, values in calls:
        spoken = prompt(rules, lang, key, **values)
        if spoken.audio_url:
            stem = spoken.audio_url.rsplit("/", 1)[-1].removesuffix(".wav")
            files[stem] = spoken.text
    return files


def menu_prompts(rules: Rules, lang: str) -> list[Prompt]:
    """What the main menu offers, in order: each queue's key, then complaint, opt-out and
    language keys. The call flow plays these and "explain" shows them: one list for both."""
    prompts = [prompt(rules, lang, "menu_queue_option", department=queue.department_for(lang),
                      digit=queue.digit)
               for queue in rules.queues.values() if queue.digit is not None]
    menu = rules.menu
    if menu.complaint_digit and rules.complaints_queue() is not None:
        prompts.append(prompt(rules, lang, "menu_complaint", digit=menu.complaint_digit))
    if menu.opt_out_digit:
        prompts.append(prompt(rules, lang, "menu_opt_out", digit=menu.opt_out_digit))
    if menu.language_digit and len(rules.languages) > 1:
        prompts.append(prompt(rules, lang, "menu_language", digit=menu.language_digit))
    return prompts


def menu_options(rules: Rules, lang: str) -> str:
    """The main menu as one text (the `{options}` of the `menu` prompt)."""
    return " ".join(p.text for p in menu_prompts(rules, lang))


def callback_time_options(rules: Rules, lang: str, queue: str) -> str:
    """The callback-time choices of `queue` as one text; preset n is chosen with digit n."""
    parts = []
    for digit, preset in enumerate(rules.queues[queue].callback.time_presets, start=1):
        if preset == "asap":
            parts.append(prompt(rules, lang, "callback_time_asap", digit=str(digit)).text)
        else:
            time = preset.removeprefix("after ").strip()
            parts.append(prompt(rules, lang, "callback_time_after", time=time, digit=str(digit)).text)
    return " ".join(parts)


def _rules_values(rules: Rules, lang: str, key: str, names: set[str]) -> dict[str, Any]:
    values: dict[str, Any] = {"company": rules.company}
    if "department" in names:
        values["department"] = rules.department_name(lang)
    if key == "menu" and "options" in names:
        values["options"] = menu_options(rules, lang)
    return values


def _callback_values(rules: Rules, lang: str, key: str, values: dict[str, Any]) -> dict[str, Any]:
    """`callback_time` with `queue=` and no `options=`: list that queue's presets."""
    if key == "callback_time" and "queue" in values and "options" not in values:
        return {"options": callback_time_options(rules, lang, values["queue"])}
    return {}


def _spoken_language(rules: Rules) -> str | None:
    """The language used when a prompt has no recording: the default, else English, else any."""
    order = [rules.hotline.default_language, "en", *rules.languages]
    return next((lang for lang in order if lang in rules.languages
                 and rules.languages[lang].say_language), None)  # type: ignore[index]
