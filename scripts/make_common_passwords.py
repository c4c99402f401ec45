"""Writes app/web/services/common_passwords.txt, the password policy's list of guessable passwords.

Made offline from the seeds below, with no download: the passwords that top every published
leak list, first names, common words (and the ones a hospital's staff reach for), keyboard walks
and digit runs. The policy (app.web.services.password_policy) compares a password in lower case,
with leading and trailing digits and symbols removed and leetspeak undone, so each entry also
stands for its variants ("Summer2024!", "p@ssw0rd1", "123dragon"). Entries shorter than 3
characters are left out: as a core they would refuse too much.

Run: python scripts/make_common_passwords.py  (the output is committed; re-run after editing).
"""

from __future__ import annotations

from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "app" / "web" / "services" / "common_passwords.txt"

# The perennial top of the leak lists (lower case; variants with digits are produced below).
TOP = """
123456 password 12345678 qwerty 123456789 12345 1234 111111 1234567 dragon 123123 baseball abc123
football monkey letmein 696969 shadow master 666666 qwertyuiop 123321 mustang 1234567890 michael
654321 superman 1qaz2wsx 7777777 121212 000000 qazwsx 123qwe killer trustno1 jordan jennifer
zxcvbnm asdfgh hunter buster soccer harley batman andrew tigger sunshine iloveyou 2000 charlie
robert thomas hockey ranger daniel starwars klaster 112233 george computer michelle jessica pepper
1111 zxcvbn 555555 11111111 131313 freedom 777777 pass maggie 159753 aaaaaa ginger princess joshua
cheese amanda summer love ashley nicole chelsea biteme matthew access yankees 987654321 dallas
austin thunder taylor matrix william corvette hello martin heather secret merlin diamond 1234qwer
gfhjkm hammer silver 222222 88888888 anthony justin test bailey q1w2e3r4t5 patrick internet scooter
orange 11111 golfer cookie richard samantha bigdog guitar jackson whatever mickey chicken sparky
snoopy maverick phoenix camaro peanut morgan welcome falcon cowboy ferrari samsung andrea smokey
steelers joseph mercedes dakota arsenal eagles melissa boomer booboo spider nascar monster tigers
yellow xxxxxx 123123123 gateway marina diablo bulldog qwer1234 compaq purple banana junior hannah
123654 porsche lakers iceman money cowboys 987654 london tennis 999999 ncc1701 coffee scooby 0000
miller boston q1w2e3r4 brandon yamaha chester mother forever johnny edward 333333 oliver redsox
player nikita knight fender barney midnight please brandy chicago badboy slayer rangers charles
angel flower bigdaddy rabbit wizard jasper enter rachel chris steven winner adidas victoria natasha
1q2w3e4r jasmine winter prince marine fishing cocacola casper james 232323 raiders 888888 marlboro
gandalf asdfasdf crystal 87654321 12344321 golden 8675309 panther lauren angela spanky thx1138
angels madison winston shannon mike toyota jordan23 canada sophie apples tiger 123abc pokemon
qazxsw 55555 qwaszx muffin johnson murphy cooper jonathan liverpoo david danielle 159357 jackie
1990 123456a 789456 turtle abcd1234 scorpion qazwsxedc 101010 butter carlos password1 dennis
slipknot qwerty123 booger asdf 1991 black startrek 12341234 cameron newyork rainbow nathan john
1992 rocket viking redskins asdfghjkl 1212 sierra peaches gemini doctor wilson sandra helpme
qwertyui victor florida dolphin pookie captain tucker blue liverpool theman bandit dolphins maddog
packers jaguar lovers nicholas united tiffany maxwell zzzzzz nirvana jeremy monica elephant giants
hotdog rosebud success debbie mountain 444444 xxxxxxxx warrior 1q2w3e4r5t q1w2e3 123456q albert
metallic lucky azerty 7777 bond007 alexis 1111111 samson 5150 willie scorpio bonnie gators benjamin
voodoo driver dexter 2112 jason calvin freddy 212121 creative 12345a sydney rush2112 1989 asdfghjk
red123 bubba 4815162342 passw0rd trouble gunner happy loveme gordon aaaa abcdef abcdefg abcdefgh
password123 password12 admin administrator root toor changeme default guest login letmein1 welcome1
qwerty1 iloveyou1 princess1 sunshine1 monkey1 football1 dragon1 baseball1 superman1 charlie1
shadow1 michael1 jennifer1 abc12345 aa123456 a123456 123456789a zaq12wsx zaq1xsw2 1qazxsw2
qweasdzxc qweasd asdzxc zxcasdqwe 1qaz2wsx3edc !qaz2wsx q2w3e4r5 passpass testtest test123
test1234 temp temp123 temppass secret123 master123 letmein123 welcome123 hello123 hello1234
trustme superstar starlight sunflower butterfly blessed lovely loveyou iloveu iloveyou2 babygirl
babyboy sweetheart sweetie honey honeybee cutie pretty beautiful gorgeous angel1 princesa tequiero
teamo amore ciao bonjour hallo hola privet parola parole passwort motdepasse contrasena senha
wachtwoord salasana jelszo haslo heslo geslo lozinka sifre
"""

# First names and surnames common in the leak lists.
NAMES = """
aaron abigail adam adrian alan albert alberto alejandro alex alexander alexandra alexis alfred alice
alicia alison allison amanda amber amelia amy ana andre andrea andreas andrew andy angela angelo
anita ann anna anne annie anthony antonio april arthur ashley audrey austin barbara barry ben
benjamin bernard beth betty beverly bill billy bob bobby bonnie brad bradley brandon brenda brian
brittany brooke bruce bryan caitlin calvin cameron carl carla carlos carmen carol caroline carolyn
carrie casey catherine cathy charles charlie charlotte chelsea cheryl chloe chris christian
christina christine christopher cindy claire clara claudia colin connie craig crystal cynthia
daisy dale dan dana daniel daniela danielle danny darren dave david dawn dean deborah debra denise
dennis derek diana diane dianne donald donna doris dorothy douglas dylan eddie edith edward elaine
eleanor elena elizabeth ella ellen emily emma eric erica erik erin ethan eugene eva evelyn felix
fernando fiona frances francesco francis frank fred frederick gabriel gabriela gary gemma george
gerald giovanni gloria grace graham greg gregory hannah harold harry hazel heather helen henry holly
howard ian isaac isabel isabella jack jackie jacob jacqueline jake james jamie jane janet janice
jason jean jeff jeffrey jenna jennifer jenny jeremy jerry jesse jessica jesus jill jim jimmy joan
joanna joe joel john johnny jonathan jordan jose joseph joshua joy joyce juan judith judy julia
julian julie justin karen kate katherine kathleen kathryn kathy katie keith kelly ken kenneth kevin
kim kimberly kyle larry laura lauren lawrence leah lee leo leonardo lily linda lisa logan lori louis
louise lucas lucy luis luke lynn madison maggie marco margaret maria marie marilyn mario mark
martha martin mary matthew max megan melanie melissa michael michelle mike mildred mohamed
mohammed monica nancy naomi natalie nathan nicholas nick nicole noah norma olga olivia oscar pamela
patricia patrick paul paula peggy peter philip phillip phyllis rachel ralph randy raymond rebecca
richard rick rita robert roberto robin roger ronald rose ruby russell ruth ryan sally sam samantha
samuel sandra sara sarah scott sean sergio sharon shirley simon sophia sophie stephanie stephen
steve steven stuart susan suzanne sylvia tammy teresa terry theresa thomas tiffany tim timothy tina
todd tom tommy tony tracy travis tyler valerie vanessa victor victoria vincent virginia walter wayne
wendy william willie zachary smith jones brown miller davis garcia rodriguez martinez hernandez lopez
gonzalez wilson anderson taylor moore jackson white harris clark lewis robinson walker young allen
king wright hill green baker adams nelson campbell mitchell roberts carter phillips evans turner
parker collins edwards stewart morris murphy cook rogers morgan cooper peterson bailey reed kelly
howard cox ward richardson watson brooks wood james bennett gray hughes price sanders myers long
ross foster muller schmidt schneider fischer weber meyer wagner becker schulz hoffmann rossi russo
ferrari esposito bianchi romano colombo martin bernard dubois durand moreau laurent
"""

# Words: animals, colours, seasons, months, days, places, sport, music, and a hospital's own.
WORDS = """
alpha beta gamma delta omega sigma zeta theta lambda kappa apple banana cherry lemon mango orange
peach pear strawberry grape melon coconut pumpkin tomato potato carrot pepper chocolate candy
cookie cookies sugar honey butter cheese pizza pasta burger coffee tea beer wine vodka whiskey
water fire earth wind air storm thunder lightning rain snow winter spring summer autumn fall
january february march april may june july august september october november december monday
tuesday wednesday thursday friday saturday sunday morning evening night midnight today tomorrow
yesterday weekend holiday vacation christmas easter birthday happy happiness smile laugh funny
crazy cool awesome super great best good nice sweet cute love lover loving friend friends family
mother father mommy daddy mama papa baby babies brother sister son daughter wife husband kids
children home house garden flower flowers rose lily tulip daisy forest tree river ocean sea beach
island mountain valley desert sky star stars moon sun sunny planet galaxy universe space rocket
red blue green yellow black white purple pink brown grey gray silver gold golden diamond crystal
ruby emerald pearl dog cat puppy kitty kitten horse pony bird eagle falcon hawk owl lion tiger
bear wolf fox rabbit bunny monkey dragon snake shark dolphin whale turtle spider panda koala zebra
elephant giraffe penguin butterfly bee ant mouse duck chicken cow pig sheep goat buffalo cobra
viper python jaguar panther leopard cheetah phoenix unicorn angel devil demon ghost shadow magic
wizard witch knight king queen prince princess lord god jesus christ heaven hell faith hope grace
peace freedom liberty justice power energy force victory winner champion hero legend master
ninja samurai warrior soldier hunter killer sniper pilot captain admiral general major doctor
nurse teacher student school college university office work job money cash dollar euro bank
business company manager boss computer laptop internet network server system windows linux apple
google facebook twitter youtube instagram yahoo hotmail gmail email mobile phone iphone android
samsung nokia sony nintendo playstation xbox gamer game games player football soccer baseball
basketball hockey tennis golf rugby cricket boxing racing runner running swimming cycling
chelsea arsenal liverpool barcelona madrid juventus milan bayern united city rangers celtic music
guitar piano drums rock metal jazz blues disco dance dancer singer song songs movie movies cinema
star trek starwars matrix batman superman spiderman ironman hulk thor avengers pokemon pikachu
mario zelda sonic minecraft fortnite naruto goku harry potter hogwarts gandalf frodo hobbit london
paris berlin rome madrid tokyo moscow boston chicago dallas houston miami texas california florida
newyork america england germany france italy spain canada australia brazil mexico india china
japan russia europe africa asia hospital clinic medical medicine health healthcare patient
patients radiology radiologist ultrasound sonography sonographer obstetrics gynecology maternity
midwife prenatal fetal fetus pregnancy pregnant baby scan scanner imaging xray mri pacs dicom
surgeon surgery physician resident intern nursing ward theatre emergency cardio neuro brain spine
heart lungs kidney liver blood pulse stethoscope scalpel fetalcns fetal-cns welcome password
passwort pass word passcode passphrase secret secure security private access login logon signin
admin administrator root superuser user username guest test testing tester demo example sample
default changeme change newpassword mypassword yourpassword letmein openup open sesame qwerty
keyboard mouse monitor printer desktop office work123 company hospital1 clinic1
"""


def keyboard_walks() -> set[str]:
    """Runs along keyboard rows and columns (QWERTY, AZERTY, QWERTZ, digits), forwards and back."""
    rows = [
        "1234567890",
        "qwertyuiop",
        "asdfghjkl",
        "zxcvbnm",
        "azertyuiop",
        "qsdfghjklm",
        "wxcvbn",
        "qwertzuiop",
        "yxcvbnm",
        "1qaz2wsx3edc4rfv5tgb6yhn7ujm",
        "qazwsxedcrfvtgbyhnujmikolp",
        "zaqxswcdevfrbgtnhymjukilop",
        "1q2w3e4r5t6y7u8i9o0p",
        "q1w2e3r4t5y6u7i8o9p0",
        "qweasdzxc",
        "zxcasdqwe",
        "0987654321",
        "poiuytrewq",
        "lkjhgfdsa",
        "mnbvcxz",
    ]
    walks: set[str] = set()
    for row in rows:
        for text in (row, row[::-1]):
            for length in range(4, len(text) + 1):
                walks.add(text[:length])
    return walks


def digit_patterns() -> set[str]:
    """Repeated digits, runs up and down, doubled short runs and plausible years."""
    patterns: set[str] = set()
    for digit in "0123456789":
        for length in range(4, 13):
            patterns.add(digit * length)
    up, down = "1234567890", "9876543210"
    for start in range(10):
        for length in range(4, 11):
            patterns.add((up * 2)[start : start + length])
            patterns.add((down * 2)[start : start + length])
    for short in ("12", "123", "1234", "12345", "21", "321", "4321", "69", "007", "2580", "1357", "2468"):
        patterns.update({short * 2, short * 3, short * 4})
    for year in range(1940, 2041):
        patterns.update({str(year), f"{year}{year}"})
    return patterns


def build() -> list[str]:
    entries = {word.lower() for word in (TOP + NAMES + WORDS).split()}
    entries |= keyboard_walks() | digit_patterns()
    return sorted(word for word in entries if len(word) >= 3)


def main() -> None:
    words = build()
    header = (
        "# Guessable passwords, one per line, lower case (see scripts/make_common_passwords.py).\n"
        "# app.web.services.password_policy refuses a password whose core is one of these.\n"
    )
    OUT.write_text(header + "\n".join(words) + "\n", encoding="utf-8")
    print(f"{len(words)} entries -> {OUT}")


if __name__ == "__main__":
    main()
