"""Reference data of the simulators: names with readings, 旭川市 address patterns, other municipalities.

Names are written family name + :data:`NAME_SEPARATOR` + given name, in kanji (``name``) and katakana
(``name_kana``), as ``tests/samples.py`` does ("旭川 花子" / "アサヒカワ ハナコ"). All names are common ones; any
resemblance of a generated person to a real one is chance. Addresses follow real 旭川市 street-name patterns
(条通, 神楽, 永山, 豊岡, 末広 …) with made-up numbers.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

NAME_SEPARATOR = " "
"""Between family and given name, in both ``name`` and ``name_kana`` (an ASCII space, as in tests/samples.py)."""

# (kanji, katakana) — common family names of Hokkaido.
FAMILY_NAMES: tuple[tuple[str, str], ...] = (
    ("佐藤", "サトウ"), ("高橋", "タカハシ"), ("佐々木", "ササキ"), ("鈴木", "スズキ"), ("伊藤", "イトウ"),
    ("田中", "タナカ"), ("吉田", "ヨシダ"), ("渡辺", "ワタナベ"), ("中村", "ナカムラ"), ("小林", "コバヤシ"),
    ("山本", "ヤマモト"), ("加藤", "カトウ"), ("斉藤", "サイトウ"), ("山田", "ヤマダ"), ("工藤", "クドウ"),
    ("村上", "ムラカミ"), ("阿部", "アベ"), ("山口", "ヤマグチ"), ("木村", "キムラ"), ("林", "ハヤシ"),
    ("清水", "シミズ"), ("松本", "マツモト"), ("斎藤", "サイトウ"), ("菅原", "スガワラ"), ("三浦", "ミウラ"),
    ("石川", "イシカワ"), ("池田", "イケダ"), ("橋本", "ハシモト"), ("藤田", "フジタ"), ("森", "モリ"),
    ("井上", "イノウエ"), ("山崎", "ヤマザキ"), ("中川", "ナカガワ"), ("千葉", "チバ"), ("後藤", "ゴトウ"),
    ("石井", "イシイ"), ("小川", "オガワ"), ("長谷川", "ハセガワ"), ("前田", "マエダ"), ("岡田", "オカダ"),
    ("近藤", "コンドウ"), ("坂本", "サカモト"), ("遠藤", "エンドウ"), ("青木", "アオキ"), ("藤井", "フジイ"),
    ("西村", "ニシムラ"), ("福田", "フクダ"), ("太田", "オオタ"), ("三上", "ミカミ"), ("原田", "ハラダ"),
    ("小野", "オノ"), ("竹内", "タケウチ"), ("金子", "カネコ"), ("和田", "ワダ"), ("中島", "ナカジマ"),
    ("石田", "イシダ"), ("上田", "ウエダ"), ("森田", "モリタ"), ("原", "ハラ"), ("柴田", "シバタ"),
    ("酒井", "サカイ"), ("宮本", "ミヤモト"), ("内田", "ウチダ"), ("高木", "タカギ"), ("安藤", "アンドウ"),
    ("谷口", "タニグチ"), ("大野", "オオノ"), ("丸山", "マルヤマ"), ("今井", "イマイ"), ("高田", "タカダ"),
    ("藤原", "フジワラ"), ("武田", "タケダ"), ("村田", "ムラタ"), ("上野", "ウエノ"), ("杉山", "スギヤマ"),
    ("増田", "マスダ"), ("小山", "コヤマ"), ("大塚", "オオツカ"), ("平野", "ヒラノ"), ("菊地", "キクチ"),
    ("成田", "ナリタ"), ("桜井", "サクライ"), ("野村", "ノムラ"), ("松田", "マツダ"),
)  # fmt: skip

# 職権修正 of a family name: the registry switches to the 旧字体 actually on the 戸籍.
FAMILY_NAME_VARIANTS: dict[str, str] = {
    "高橋": "髙橋",
    "斉藤": "齊藤",
    "斎藤": "齋藤",
    "渡辺": "渡邊",
    "山崎": "山﨑",
    "高木": "髙木",
    "高田": "髙田",
}


@dataclass(frozen=True)
class GivenName:
    kanji: str
    kana: str
    era: str  # "old" (born before 1960), "mid" (1960–1989), "new" (1990 and later)
    alt_kana: str = ""  # another reading of the same kanji: a kana 職権修正 switches to it


def _g(kanji: str, kana: str, era: str, alt: str = "") -> GivenName:
    return GivenName(kanji, kana, era, alt)


MALE_GIVEN_NAMES: tuple[GivenName, ...] = (
    _g("清", "キヨシ", "old"), _g("茂", "シゲル", "old"), _g("勇", "イサム", "old"), _g("実", "ミノル", "old"),
    _g("進", "ススム", "old"), _g("正", "タダシ", "old", "マサシ"), _g("勝", "マサル", "old"),
    _g("稔", "ミノル", "old"), _g("和夫", "カズオ", "old"), _g("正男", "マサオ", "old"),
    _g("一郎", "イチロウ", "old"), _g("三郎", "サブロウ", "old"), _g("幸雄", "ユキオ", "old", "サチオ"),
    _g("義雄", "ヨシオ", "old"), _g("信夫", "ノブオ", "old", "シノブ"), _g("武", "タケシ", "old"),
    _g("豊", "ユタカ", "old"), _g("昭", "アキラ", "old"), _g("博", "ヒロシ", "old"), _g("修", "オサム", "old"),
    _g("誠", "マコト", "mid"), _g("浩", "ヒロシ", "mid", "ユタカ"), _g("隆", "タカシ", "mid"),
    _g("明", "アキラ", "mid"), _g("健一", "ケンイチ", "mid"), _g("浩二", "コウジ", "mid"), _g("剛", "ツヨシ", "mid"),
    _g("大輔", "ダイスケ", "mid"), _g("拓也", "タクヤ", "mid"), _g("直樹", "ナオキ", "mid"),
    _g("達也", "タツヤ", "mid"), _g("和也", "カズヤ", "mid"), _g("雄一", "ユウイチ", "mid"),
    _g("哲也", "テツヤ", "mid"), _g("智", "サトシ", "mid", "サトル"), _g("淳", "ジュン", "mid", "アツシ"),
    _g("健二", "ケンジ", "mid"), _g("秀樹", "ヒデキ", "mid"), _g("浩之", "ヒロユキ", "mid"),
    _g("隆之", "タカユキ", "mid"), _g("正樹", "マサキ", "mid"), _g("俊介", "シュンスケ", "mid"),
    _g("健太", "ケンタ", "new"), _g("翔太", "ショウタ", "new"), _g("大樹", "ダイキ", "new", "ヒロキ"),
    _g("亮", "リョウ", "new", "アキラ"), _g("翼", "ツバサ", "new"), _g("蓮", "レン", "new"),
    _g("陽翔", "ハルト", "new", "ヒナト"), _g("悠真", "ユウマ", "new"), _g("湊", "ミナト", "new"),
    _g("大翔", "ヒロト", "new", "ハルト"), _g("颯太", "ソウタ", "new"), _g("蒼", "アオイ", "new", "ソウ"),
    _g("樹", "イツキ", "new", "タツキ"), _g("悠人", "ユウト", "new", "ハルト"), _g("陸", "リク", "new"),
    _g("海斗", "カイト", "new"), _g("優斗", "ユウト", "new"), _g("康介", "コウスケ", "new"),
    _g("裕太", "ユウタ", "new"),
)  # fmt: skip

FEMALE_GIVEN_NAMES: tuple[GivenName, ...] = (
    _g("幸子", "サチコ", "old", "ユキコ"), _g("節子", "セツコ", "old"), _g("和子", "カズコ", "old"),
    _g("文子", "フミコ", "old", "アヤコ"), _g("良子", "ヨシコ", "old", "リョウコ"), _g("光子", "ミツコ", "old"),
    _g("敏子", "トシコ", "old"), _g("美代子", "ミヨコ", "old"), _g("千代子", "チヨコ", "old"),
    _g("悦子", "エツコ", "old"), _g("花子", "ハナコ", "old"), _g("京子", "キョウコ", "old"),
    _g("弘子", "ヒロコ", "old"), _g("美智子", "ミチコ", "old"), _g("洋子", "ヨウコ", "old", "ヒロコ"),
    _g("恵子", "ケイコ", "old"), _g("順子", "ジュンコ", "mid", "ヨリコ"), _g("久美子", "クミコ", "mid"),
    _g("典子", "ノリコ", "mid"), _g("直美", "ナオミ", "mid"), _g("由美子", "ユミコ", "mid"),
    _g("真由美", "マユミ", "mid"), _g("裕子", "ユウコ", "mid", "ヒロコ"), _g("智子", "トモコ", "mid", "サトコ"),
    _g("明美", "アケミ", "mid"), _g("陽子", "ヨウコ", "mid"), _g("美穂", "ミホ", "mid"),
    _g("恵", "メグミ", "mid", "ケイ"), _g("香織", "カオリ", "mid"), _g("恭子", "キョウコ", "mid"),
    _g("由紀", "ユキ", "mid"), _g("麻美", "アサミ", "mid", "マミ"), _g("理恵", "リエ", "mid"),
    _g("佳子", "ヨシコ", "mid", "ケイコ"), _g("知子", "トモコ", "mid"), _g("加奈子", "カナコ", "mid"),
    _g("友美", "トモミ", "mid"), _g("静香", "シズカ", "mid"), _g("愛", "アイ", "new", "メグミ"),
    _g("麻衣", "マイ", "new"), _g("彩", "アヤ", "new", "サヤ"), _g("舞", "マイ", "new"), _g("美咲", "ミサキ", "new"),
    _g("沙織", "サオリ", "new"), _g("優子", "ユウコ", "new"), _g("千尋", "チヒロ", "new"),
    _g("陽菜", "ヒナ", "new", "ハルナ"), _g("結衣", "ユイ", "new"), _g("葵", "アオイ", "new"),
    _g("凛", "リン", "new"), _g("芽依", "メイ", "new"), _g("さくら", "サクラ", "new"),
    _g("結菜", "ユイナ", "new", "ユナ"), _g("美月", "ミツキ", "new"), _g("紬", "ツムギ", "new"),
    _g("澪", "ミオ", "new"), _g("杏", "アン", "new", "アンズ"), _g("春香", "ハルカ", "new"),
    _g("奈々", "ナナ", "new"), _g("瞳", "ヒトミ", "new"),
)  # fmt: skip


@dataclass(frozen=True)
class AddressPattern:
    """One street pattern; ``template`` is formatted with ``jo``, ``chome``, ``ban`` and ``go`` (inclusive ranges)."""

    template: str
    jo: tuple[int, int]
    chome: tuple[int, int]
    ban: tuple[int, int]
    go: tuple[int, int]
    weight: int
    postcode: str = "070-00"  # the first five digits of the town's simulated 郵便番号 (:func:`postcode`)

    @property
    def town(self) -> str:
        return self.template.split("{", 1)[0]


ADDRESS_PATTERNS: tuple[AddressPattern, ...] = (
    AddressPattern("北海道旭川市{jo}条通{chome}丁目{ban}番地", (1, 10), (1, 24), (1, 300), (0, 0), 14, "070-80"),
    AddressPattern("北海道旭川市神楽{jo}条{chome}丁目{ban}番{go}号", (1, 7), (1, 14), (1, 20), (1, 25), 8, "071-81"),
    AddressPattern("北海道旭川市神楽岡{jo}条{chome}丁目{ban}番{go}号", (1, 16), (1, 8), (1, 15), (1, 20), 7, "072-82"),
    AddressPattern("北海道旭川市永山{jo}条{chome}丁目{ban}番{go}号", (1, 14), (1, 24), (1, 20), (1, 25), 12, "073-83"),
    AddressPattern("北海道旭川市豊岡{jo}条{chome}丁目{ban}番{go}号", (1, 16), (1, 12), (1, 18), (1, 22), 10, "074-84"),
    AddressPattern("北海道旭川市末広{jo}条{chome}丁目{ban}番{go}号", (1, 8), (1, 13), (1, 18), (1, 22), 8, "075-85"),
    AddressPattern("北海道旭川市末広東{jo}条{chome}丁目{ban}番{go}号", (1, 3), (1, 9), (1, 15), (1, 20), 3, "076-86"),
    AddressPattern("北海道旭川市東光{jo}条{chome}丁目{ban}番{go}号", (1, 27), (1, 8), (1, 15), (1, 20), 9, "077-87"),
    AddressPattern("北海道旭川市春光{jo}条{chome}丁目{ban}番{go}号", (1, 10), (1, 7), (1, 15), (1, 20), 5, "078-88"),
    AddressPattern("北海道旭川市緑が丘東{jo}条{chome}丁目{ban}番{go}号", (1, 5), (1, 4), (1, 12), (1, 18), 3, "079-89"),
    AddressPattern("北海道旭川市旭町{jo}条{chome}丁目{ban}番{go}号", (1, 2), (1, 23), (1, 12), (1, 18), 4, "070-90"),
    AddressPattern("北海道旭川市忠和{jo}条{chome}丁目{ban}番{go}号", (1, 8), (1, 7), (1, 12), (1, 18), 3, "071-91"),
    AddressPattern("北海道旭川市錦町{chome}丁目{ban}番地", (0, 0), (1, 23), (1, 250), (0, 0), 2, "072-92"),
)


def postcode(address: str) -> str:
    """The simulated 郵便番号 (NNN-NNNN) of an address made from :data:`ADDRESS_PATTERNS`: the town's five digits
    and two from the address itself (stable, and drawing nothing from the simulator's random stream). Simulated:
    not Japan Post's table. An address of no pattern gets the first pattern's town prefix.
    """
    town = next((p for p in sorted(ADDRESS_PATTERNS, key=lambda p: -len(p.town)) if address.startswith(p.town)),
                ADDRESS_PATTERNS[0])  # fmt: skip
    return f"{town.postcode}{zlib.crc32(address.encode()) % 100:02d}"


# (団体コード, name, weight): where 転入 residents come from and 転出 residents go to (all check digits valid).
OTHER_MUNICIPALITIES: tuple[tuple[str, str, int], ...] = (
    ("011002", "札幌市", 40), ("012025", "函館市", 5), ("012033", "小樽市", 3), ("012050", "室蘭市", 2),
    ("012068", "釧路市", 4), ("012076", "帯広市", 4), ("012084", "北見市", 4), ("012106", "岩見沢市", 2),
    ("012114", "網走市", 2), ("012122", "留萌市", 2), ("012131", "苫小牧市", 3), ("012149", "稚内市", 2),
    ("012211", "名寄市", 3), ("012297", "富良野市", 2), ("014524", "鷹栖町", 3), ("014532", "東神楽町", 4),
    ("014541", "当麻町", 2), ("014559", "比布町", 1), ("014583", "東川町", 3), ("014591", "美瑛町", 2),
    ("131041", "東京都新宿区", 3), ("141003", "横浜市", 2), ("041009", "仙台市", 2), ("231002", "名古屋市", 1),
    ("271004", "大阪市", 1), ("401307", "福岡市", 1),
)  # fmt: skip

# Katakana a hand-written form is easily misread as (a 受診票 transcribed at the institution).
KANA_CONFUSIONS: dict[str, str] = {
    "シ": "ツ", "ツ": "シ", "ソ": "ン", "ン": "ソ", "ク": "ワ", "ワ": "ク", "ウ": "ワ", "ナ": "メ", "メ": "ナ",
    "ヌ": "ス", "ス": "ヌ", "チ": "テ", "テ": "チ", "ロ": "コ", "コ": "ロ", "ハ": "バ", "バ": "ハ", "タ": "ダ",
    "ダ": "タ", "カ": "ガ", "ガ": "カ", "サ": "ザ", "ザ": "サ", "ヒ": "ビ", "ビ": "ヒ", "ホ": "ボ", "ボ": "ホ",
    "ト": "ド", "ド": "ト", "ケ": "ゲ", "ゲ": "ケ", "キ": "ギ", "ギ": "キ", "ゴ": "コ", "フ": "ブ", "ブ": "フ",
    "ョ": "ヨ", "ヨ": "ョ", "ュ": "ユ", "ユ": "ュ", "ッ": "ツ", "ジ": "シ", "ズ": "ス", "オ": "ォ",
}  # fmt: skip

KATAKANA = "アイウエオカキクケコサシスセソタチツテトナニヌネノハヒフヘホマミムメモヤユヨラリルレロワン"
"""Plain katakana for a typo where :data:`KANA_CONFUSIONS` has no entry."""
